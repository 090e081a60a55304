"""sheaf.Dataset's methods for the other frameworks delegate to their modules,
which `import sheaf` never imports (the client works without the frameworks)."""

from __future__ import annotations

import subprocess
import sys

import datasets
import ray

import sheaf.ray
from sheaf.arrays import NumpyBatches
from sheaf.tf import TensorFlowLoader

NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"


def test_importing_sheaf_imports_no_framework():
    code = (
        "import sys, sheaf, sheaf.dataset, sheaf.loader; "
        "print(sorted(m for m in ('tensorflow', 'datasets', 'ray', 'jax', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == "[]"


def test_dataset_methods(client, ray_cluster):
    ds = client.dataset(NUMBERS, columns=["id", "label"])
    arrays = ds.to_numpy_batches(batch_size=5000, seed=1, shuffle_buffer=3000)
    assert isinstance(arrays, NumpyBatches) and len(arrays) == 4
    assert (
        next(iter(arrays))["id"].tolist()
        == next(iter(NumpyBatches(ds, batch_size=5000, seed=1, shuffle_buffer=3000)))["id"].tolist()
    )
    tf_loader = ds.to_tensorflow(batch_size=5000, num_workers=2)
    assert isinstance(tf_loader, TensorFlowLoader) and tf_loader.num_workers == 2 and len(tf_loader) == 4
    hf = ds.to_huggingface(num_shards=4, seed=1)
    assert isinstance(hf, datasets.IterableDataset) and hf.num_shards == 4
    rds = ds.replan(partitions=3).to_ray()
    assert isinstance(rds, ray.data.Dataset) and rds.count() == 20_000
    assert isinstance(sheaf.ray.SheafDatasource(ds).dataset, sheaf.Dataset)
