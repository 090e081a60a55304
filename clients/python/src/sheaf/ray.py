"""Ray Data integration: read a Sheaf dataset as a ``ray.data.Dataset``,
one read task per Flight endpoint, so a Ray cluster spreads the read over its
workers (each task opens its own Flight connection to the endpoint's
location).

>>> import sheaf.ray                                                           # doctest: +SKIP
>>> ds = client.dataset("sheaf://team/clicks/train.parquet", partitions=64)  # doctest: +SKIP
>>> rds = sheaf.ray.read(ds)               # a ray.data.Dataset of 64 blocks   # doctest: +SKIP
>>> rds.map_batches(featurize).write_parquet("/tmp/out")                      # doctest: +SKIP

Needs the ``ray`` extra (``pip install 'sheaf[ray]'``). Rows come in
endpoint order within a block; Ray does not keep the order of blocks unless
``DataContext.execution_options.preserve_order`` is set. A column selection
that Ray pushes down (``rds.select_columns([...])``) is asked of the server
(``columns=``), so only those columns travel.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

try:
    import ray.data
    from ray.data.block import BlockMetadata
    from ray.data.datasource import Datasource, ReadTask
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("sheaf.ray needs Ray Data: pip install 'sheaf[ray]'") from e

from sheaf.dataset import Dataset, read_endpoint
from sheaf.errors import InvalidArgumentError

__all__ = ["SheafDatasource", "read"]


def _read_task(dataset: Dataset, index: int) -> Iterator[pa.Table]:
    """Runs in a Ray worker: streams endpoint ``index`` of ``dataset`` into
    one block. The task's copy of the client opens its own connection, closed
    when the task ends."""
    try:
        batches = list(read_endpoint(dataset.client, dataset.endpoints[index], f"reading {dataset.pinned_uri}"))
    finally:
        dataset.client.close()
    yield pa.Table.from_batches(batches, schema=dataset.schema)


def _endpoint_rows(dataset: Dataset) -> list[int | None]:
    """Each endpoint's rows when known without reading: the server's
    ``EndpointMetadata.rows`` (``Endpoint.rows``), else ``None``."""
    return [e.rows for e in dataset.endpoints]


class SheafDatasource(Datasource):
    """A ``ray.data.Datasource`` over a planned Sheaf dataset: one
    ``ReadTask`` per Flight endpoint (Ray's ``parallelism`` hint is not
    followed: plan the dataset with ``partitions=`` to choose the number of
    tasks). Each task yields the endpoint's rows as one block."""

    def __init__(self, dataset: Dataset) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # (untyped in Ray)
        self._dataset = dataset
        self._projection_map: dict[str, str] | None = None

    def __repr__(self) -> str:
        return f"<sheaf.ray.SheafDatasource {self._dataset.name}: {len(self._dataset.endpoints)} endpoint(s)>"

    @property
    def dataset(self) -> Dataset:
        """The planned read (before any column selection Ray pushed down)."""
        return self._dataset

    def get_name(self) -> str:
        """The name of the read operator in Ray's progress bars and stats."""
        return "Sheaf"

    def estimate_inmemory_data_size(self) -> int | None:
        """The table's uncompressed bytes, when the server knows them."""
        return self._dataset.total_bytes

    def supports_projection_pushdown(self) -> bool:
        """Column selections are read by the server (``columns=``)."""
        return True

    def _planned(self) -> Dataset:
        """The dataset with Ray's column selection applied (planned again when it selects fewer columns)."""
        columns = self._get_data_columns()
        if columns is None or columns == self._dataset.schema.names:
            return self._dataset
        unknown = [c for c in columns if c not in self._dataset.schema.names]
        if unknown:
            raise InvalidArgumentError(
                f"{self._dataset.name}: Ray selected column(s) {', '.join(map(repr, unknown))} the dataset does "
                f"not have (it has {', '.join(self._dataset.schema.names)})",
                code="CLIENT",
                column=unknown[0],
            )
        return self._dataset._replan({"columns": list(columns)}, record=False)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        """One read task per endpoint, with its exact row count when known
        without reading, and its share of :attr:`Dataset.total_bytes`."""
        dataset = self._planned()
        rows = _endpoint_rows(dataset)
        total_rows, total_bytes = dataset.num_rows, dataset.total_bytes
        tasks = []
        for endpoint, n in zip(dataset.endpoints, rows, strict=True):
            size = None
            if n is not None and total_bytes is not None and total_rows:
                size = int(total_bytes * n // total_rows)
            metadata = BlockMetadata(num_rows=n, size_bytes=size, exec_stats=None, input_files=None)
            tasks.append(
                ReadTask(
                    functools.partial(_read_task, dataset, endpoint.index),
                    metadata,
                    schema=dataset.schema,
                    per_task_row_limit=per_task_row_limit,
                )
            )
        return tasks


def read(dataset: Dataset, **read_args: Any) -> ray.data.Dataset:
    """``ray.data.read_datasource(SheafDatasource(dataset), **read_args)``: a
    ``ray.data.Dataset`` with one block per endpoint of ``dataset``.
    ``read_args`` are ``read_datasource``'s (``concurrency=``,
    ``num_cpus=``, ``ray_remote_args=``...). Starts Ray locally when it is
    not initialized (Ray's own behaviour)."""
    out: ray.data.Dataset = ray.data.read_datasource(SheafDatasource(dataset), **read_args)
    return out
