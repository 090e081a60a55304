"""Functions DataLoader workers run (module-level, so spawned workers can
unpickle them) and the body of the two-process torch.distributed test."""

from __future__ import annotations

import datetime
import json
import os
import sys

import pyarrow as pa


def ids_and_pid(batch: pa.RecordBatch) -> dict:
    """collate hook: the batch's ids and the process that made it."""
    return {"id": batch.column("id").to_pylist(), "pid": os.getpid()}


def ids_and_credentials(batch: pa.RecordBatch) -> dict:
    """collate hook (DataLoader workers only): the batch's ids, the process,
    the token this worker's client sends, and this worker's dataset pickled
    again (everything the worker holds of the client)."""
    import pickle

    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    assert info is not None, "ids_and_credentials runs in DataLoader workers"
    held = info.dataset
    return {
        "id": batch.column("id").to_pylist(),
        "pid": os.getpid(),
        "token": held.dataset.client.spec.token,
        "held": pickle.dumps(held),
    }


def names(batch: pa.RecordBatch) -> list[str]:
    return batch.column("name").to_pylist()


def files(batch: pa.RecordBatch) -> list[tuple[str, bytes]]:
    return list(zip(batch.column("logical_key").to_pylist(), batch.column("content").to_pylist(), strict=True))


def distributed_rank(rank: int, world_size: int, url: str, init_file: str, out_dir: str) -> None:
    """One rank of a gloo process group: rank and world size come from
    torch.distributed; every batch is followed by an all_reduce, as DDP does,
    so unequal batch counts would hang (the timeout turns that into an error)."""
    sys.path.insert(0, os.path.dirname(__file__))
    import torch
    import torch.distributed as dist

    import sheaf
    import sheaf.torch

    dist.init_process_group(
        "gloo",
        init_method=f"file://{init_file}",
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        client = sheaf.connect(url, timeout=60, read_timeout=60)
        ds = client.dataset("sheaf://test/tables:v1/tables/numbers.parquet", columns=["id"], partitions=3)
        train = ds.to_torch(batch_size=700, seed=11, equal_batches=True)
        assert (train.rank, train.world_size) == (rank, world_size)
        loader = sheaf.torch.DataLoader(train, num_workers=1, timeout=60)
        ids, steps = [], 0
        for batch in loader:
            ids.extend(batch["id"].tolist())
            total = torch.tensor([1])
            dist.all_reduce(total)
            steps += 1
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"ids": ids, "steps": steps, "len": len(loader)}, f)
    finally:
        dist.destroy_process_group()
