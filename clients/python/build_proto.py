"""Generates the client's protobuf code from ``proto/sheaf.proto``, the wire
contract between Sheaf's server and its clients: ``sheaf/_proto/sheaf_pb2.py``
and its typing stub ``sheaf_pb2.pyi``, with the protoc that ``grpcio-tools``
bundles (no system protoc).

``setup.py`` runs it on every build (the generated files are not committed).
By hand, for type checkers and editors working on the source tree::

    python clients/python/build_proto.py [ROOT]   # writes ROOT/sheaf/_proto (default ROOT: src; git-ignored)

The proto is ``proto/sheaf.proto`` next to this file in an sdist (and in the
copy ``ci/test.sh`` builds), else the repository's ``../../proto/sheaf.proto``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CANDIDATES = (HERE / "proto" / "sheaf.proto", HERE.parent.parent / "proto" / "sheaf.proto")


def find_proto() -> Path:
    """The contract's ``sheaf.proto``."""
    for path in CANDIDATES:
        if path.is_file():
            return path
    raise FileNotFoundError(
        "sheaf.proto not found at " + " or ".join(str(p) for p in CANDIDATES) + ": build the client from a "
        "checkout of the repository (clients/python), or from an sdist (which includes proto/)"
    )


# Where the generated module lives in the package: protoc names the module
# (and its classes' __module__, which pickling needs) after the proto's path.
PACKAGE_PATH = "sheaf/_proto/sheaf.proto"


def generate(root: Path) -> list[Path]:
    """Writes ``root/sheaf/_proto/sheaf_pb2.py`` and ``sheaf_pb2.pyi``
    (module ``sheaf._proto.sheaf_pb2``); returns their paths."""
    from grpc_tools import protoc  # a build requirement (pyproject.toml)

    proto = find_proto()
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / PACKAGE_PATH
        staged.parent.mkdir(parents=True)
        shutil.copyfile(proto, staged)
        root.mkdir(parents=True, exist_ok=True)
        args = ["protoc", f"--proto_path={tmp}", f"--python_out={root}", f"--pyi_out={root}", str(staged)]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {proto}")
    out = root / "sheaf" / "_proto"
    return [out / "sheaf_pb2.py", out / "sheaf_pb2.pyi"]


def copy_proto(dest: Path) -> None:
    """Puts ``sheaf.proto`` in ``dest`` (an sdist's ``proto/``)."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(find_proto(), dest / "sheaf.proto")


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "src"
    for path in generate(target):
        print(path)
