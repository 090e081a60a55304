"""sheaf.arrays (numpy batches) against sheaf.torch, in the main suite (its venv
has numpy and torch): the same batches in the same order for the same
options, and states that move between them (one checkpoint format)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import sheaf
import sheaf.torch
from sheaf.arrays import NumpyBatches, column_to_numpy

import testdata

N = testdata.NUMBERS
NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"
COLUMNS = ["id", "x", "label", "flag", "vec"]


@pytest.mark.parametrize("options", [{}, {"shuffle_buffer": 5_000}, {"shuffle": False}])
def test_numpy_batches_match_torch(client, options):
    ds = client.dataset(NUMBERS, columns=COLUMNS)
    train = ds.to_torch(batch_size=700, seed=5, **options)
    arrays = NumpyBatches(ds, batch_size=700, seed=5, **options)
    for epoch in (0, 1):
        train.set_epoch(epoch)
        arrays.set_epoch(epoch)
        torch_batches = list(sheaf.torch.DataLoader(train))
        numpy_batches = list(arrays)
        assert len(numpy_batches) == len(torch_batches) == len(arrays)
        for t, a in zip(torch_batches, numpy_batches, strict=True):
            for name in COLUMNS:
                np.testing.assert_array_equal(t[name].numpy(), a[name])


def test_states_move_between_numpy_and_torch(client):
    ds = client.dataset(NUMBERS, columns=["id"])
    arrays = NumpyBatches(ds, batch_size=1000, seed=2)
    arrays.set_epoch(1)
    it = iter(arrays)
    first = [i for _ in range(6) for i in next(it)["id"].tolist()]
    train = ds.to_torch(batch_size=1000, seed=2)
    train.load_state_dict(arrays.state_dict())
    assert train.epoch == 1
    rest = [i for b in sheaf.torch.DataLoader(train, num_workers=2) for i in b["id"].tolist()]
    assert sorted(first + rest) == list(range(N))


def test_numpy_rejects_what_torch_rejects(client):
    ds = client.dataset(NUMBERS, columns=["id", "name"])
    with pytest.raises(sheaf.TensorConversionError, match="'name'"):
        NumpyBatches(ds)
    with pytest.raises(sheaf.TensorConversionError, match="'name'"):
        ds.to_torch()


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("x_1", "filter='x_1 IS NOT NULL'"),
        ("a,b", """filter='"a,b" IS NOT NULL'"""),
        ("Temp", """filter='"Temp" IS NOT NULL'"""),  # unquoted names are lower-cased
        ('say "hi"', 'filter=\'"say ""hi""" IS NOT NULL\''),  # inner quotes doubled
        ("2x", """filter='"2x" IS NOT NULL'"""),
    ],
)
def test_conversion_errors_name_the_column_and_a_valid_filter(name, hint):
    nulls = pa.array([1.0, None])
    for convert in (sheaf.torch.column_to_tensor, column_to_numpy):
        with pytest.raises(sheaf.TensorConversionError) as e:
            convert(nulls, name, "ds")
        assert e.value.column == name and hint in str(e.value), str(e.value)
    with pytest.raises(sheaf.TensorConversionError) as e:
        sheaf.torch.column_to_tensor(pa.array(["s"]), name)
    assert e.value.column == name
    with pytest.raises(sheaf.TensorConversionError) as e:
        sheaf.torch.check_schema(pa.schema([("ok", pa.int64()), (name, pa.string()), ("z", pa.string())]), "ds")
    assert e.value.column == name
