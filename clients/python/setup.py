"""setuptools with one extra step: the build generates ``sheaf/_proto`` from
``proto/sheaf.proto`` (``build_proto.py``); the metadata is in pyproject.toml."""

from __future__ import annotations

import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

sys.path.insert(0, str(Path(__file__).resolve().parent))
import build_proto  # noqa: E402


class BuildPy(build_py):
    """Copies the sources, then generates the protobuf modules next to them
    (into the source tree for an editable install)."""

    def run(self) -> None:
        super().run()
        if self.dry_run:
            return
        if getattr(self, "editable_mode", False):
            build_proto.generate(Path(__file__).resolve().parent / "src")
        else:
            build_proto.generate(Path(self.build_lib))


class SDist(sdist):
    """Also ships ``proto/sheaf.proto``, so the sdist builds on its own."""

    def make_release_tree(self, base_dir: str, files: list[str]) -> None:
        super().make_release_tree(base_dir, files)
        build_proto.copy_proto(Path(base_dir) / "proto")


setup(cmdclass={"build_py": BuildPy, "sdist": SDist})
