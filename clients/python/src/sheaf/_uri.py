"""Dataset URIs (``sheaf://OWNER/NAME[@HASH|:TAG][/PATH][?PARAM=VALUE&...]``):
building them from keyword arguments and changing their parameters. The
server parses them; the client never needs to understand a URI beyond
splitting off its query."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping

SCHEME = "sheaf://"

# Parameters the server knows, in the order the client writes them.
PARAMS = ("columns", "filter", "limit", "sample", "sample_rows", "seed", "partitions", "compression", "content")

# Characters left as they are in a path (the server decodes the rest).
_PATH_SAFE = "/!$&'()*+,;=-._~"


def encode_value(value: object) -> str:
    """A parameter value as the server expects it: percent-encoded, so `+`,
    `&`, `=`, spaces and quotes survive."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    return urllib.parse.quote(str(value), safe="")


def ref(package: str, revision: str | None = None, tag: str | None = None) -> str:
    """``owner/name[@hash|:tag]``."""
    if revision and tag:
        raise ValueError(f"give revision= or tag= for {package}, not both")
    if "@" in package or ":" in package:
        if revision or tag:
            raise ValueError(f"package {package!r} already names a revision; do not also pass revision= or tag=")
        return package
    if revision:
        return f"{package}@{revision}"
    if tag:
        return f"{package}:{tag}"
    return package


def build(package: str, *, revision: str | None = None, tag: str | None = None, path: str = "",
          params: Mapping[str, object] | None = None) -> str:
    """A dataset URI from its parts; ``params`` with a ``None`` value are left out."""
    text = SCHEME + ref(package, revision, tag)
    path = path.strip("/")
    if path:
        text += "/" + urllib.parse.quote(path, safe=_PATH_SAFE)
    return with_params(text, params or {})


def split(uri: str) -> tuple[str, dict[str, str]]:
    """``(base, {param: raw percent-encoded value})`` of a URI, in order."""
    base, _, query = uri.partition("?")
    params: dict[str, str] = {}
    for pair in query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        params[key] = value
    return base, params


def join(base: str, params: Mapping[str, str]) -> str:
    if not params:
        return base
    return base + "?" + "&".join(f"{k}={v}" for k, v in params.items())


def with_params(uri: str, params: Mapping[str, object], *, drop: Iterable[str] = ()) -> str:
    """``uri`` with parameters set (``None`` removes one) and ``drop`` removed."""
    base, current = split(uri)
    for key in drop:
        current.pop(key, None)
    for key, value in params.items():
        if value is None:
            current.pop(key, None)
        else:
            current[key] = encode_value(value)
    return join(base, current)


def param(uri: str, key: str) -> str | None:
    """The decoded value of one parameter, or ``None``."""
    raw = split(uri)[1].get(key)
    return None if raw is None else urllib.parse.unquote(raw)


def sql_string(value: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"
