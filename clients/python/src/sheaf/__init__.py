"""Sheaf's Python client: read tables of versioned data packages over Arrow
Flight into pyarrow, pandas, polars and PyTorch, and write new revisions.

>>> import sheaf
>>> client = sheaf.connect("grpc://127.0.0.1:50051")                          # doctest: +SKIP
>>> ds = client.dataset("sheaf://demo/weather/tables/readings.parquet?columns=id,temp_c")  # doctest: +SKIP
>>> ds.to_pandas()                                                              # doctest: +SKIP
>>> client.write("sheaf://team/features/train.parquet", df, message="features")  # doctest: +SKIP

PyTorch support lives in :mod:`sheaf.torch` (``pip install 'sheaf[torch]'``);
random access (``ds.take``, ``ds[i]``, ``ds.to_torch_map()``) in
:mod:`sheaf.random_access` and :mod:`sheaf.torch_map`; the local cache of
pinned reads (``sheaf.connect(url, cache=True)``) in :mod:`sheaf.cache`.
"""

from ._cache import Cache
from ._version import __version__
from .client import Client, Entry, File, PackageInfo, RevisionContents, RevisionInfo, TableInfo, connect
from .dataset import Dataset, Endpoint
from .errors import (
    AlreadyExistsError,
    DataLossError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    SchemaMismatchError,
    SessionNotFoundError,
    SheafError,
    StalledError,
    TensorConversionError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)
from .write import LineageInput, LineageNode, LineageTracker, Part, Writer, WriteResult

__all__ = [
    "__version__",
    "connect",
    "Cache",
    "Client",
    "Dataset",
    "Endpoint",
    "Entry",
    "File",
    "PackageInfo",
    "RevisionContents",
    "RevisionInfo",
    "TableInfo",
    "Writer",
    "WriteResult",
    "Part",
    "LineageInput",
    "LineageNode",
    "LineageTracker",
    "SheafError",
    "NotFoundError",
    "InvalidArgumentError",
    "UnavailableError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "DataLossError",
    "UnimplementedError",
    "DeadlineExceededError",
    "StalledError",
    "TensorConversionError",
    "AlreadyExistsError",
    "SessionNotFoundError",
    "SchemaMismatchError",
]
