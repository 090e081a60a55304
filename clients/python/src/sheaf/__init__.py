"""Sheaf's Python client: read tables of versioned data packages over Arrow
Flight into pyarrow, pandas, polars and PyTorch.

>>> import sheaf
>>> client = sheaf.connect("grpc://127.0.0.1:50051")                          # doctest: +SKIP
>>> ds = client.dataset("sheaf://demo/weather/tables/readings.parquet?columns=id,temp_c")  # doctest: +SKIP
>>> ds.to_pandas()                                                              # doctest: +SKIP

PyTorch support lives in :mod:`sheaf.torch` (``pip install 'sheaf[torch]'``).
"""

from .client import Client, Entry, File, PackageInfo, RevisionContents, RevisionInfo, TableInfo, connect
from .dataset import Dataset, Endpoint
from .errors import (
    DataLossError,
    DeadlineExceededError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    SheafError,
    TensorConversionError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
)

__version__ = "0.1.0"

__all__ = [
    "connect",
    "Client",
    "Dataset",
    "Endpoint",
    "Entry",
    "File",
    "PackageInfo",
    "RevisionContents",
    "RevisionInfo",
    "TableInfo",
    "SheafError",
    "NotFoundError",
    "InvalidArgumentError",
    "UnavailableError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "DataLossError",
    "UnimplementedError",
    "DeadlineExceededError",
    "TensorConversionError",
]
