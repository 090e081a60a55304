"""TensorFlow (sheaf.tf): a tf.data.Dataset following the loader core's order,
sharding and resume state; K interleaved generators hand out batches as K
DataLoader workers do; a signature from the Arrow schema; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import sheaf
from sheaf.loader import Loader
from sheaf.tf import TensorFlowLoader, signature

import testdata

N = testdata.NUMBERS
NUMBERS = "sheaf://test/tables:v1/tables/numbers.parquet"
COLUMNS = ["id", "x", "label", "flag", "vec", "name"]


def round_robin(streams):
    """Batches taken from each stream in turn, skipping finished ones (a DataLoader's order)."""
    its, out = [iter(s) for s in streams], []
    while its:
        for it in list(its):
            b = next(it, None)
            if b is None:
                its.remove(it)
            else:
                out.append(b)
    return out


def test_signature_from_the_schema(client):
    ds = client.dataset(NUMBERS, columns=COLUMNS)
    sig = signature(ds.schema)
    assert sig["id"] == tf.TensorSpec((None,), tf.int64, name="id")
    assert sig["x"].dtype == tf.float32 and sig["label"].dtype == tf.int32 and sig["flag"].dtype == tf.bool
    assert sig["vec"].shape.as_list() == [None, 3] and sig["vec"].dtype == tf.float32
    assert sig["name"].dtype == tf.string


def test_same_batches_as_the_core(client):
    ds = client.dataset(NUMBERS, columns=COLUMNS)
    train = TensorFlowLoader(ds, batch_size=600, seed=4)
    assert isinstance(train.dataset, tf.data.Dataset)
    batches = list(train)
    src = Loader(ds, batch_size=600, seed=4)
    want = [b.column("id").to_pylist() for b in src.stream(epoch=0)]
    assert [b["id"].numpy().tolist() for b in batches] == want
    b = batches[0]
    ids = b["id"].numpy()
    np.testing.assert_array_equal(b["vec"].numpy()[:, 1], ids.astype(np.float32) + 0.5)
    assert [s.decode() for s in b["name"].numpy()] == [f"n{i}" for i in ids]
    assert b["flag"].numpy().tolist() == [i % 3 == 0 for i in ids]
    # The tf.data.Dataset itself, iterated again (as model.fit does each epoch), after set_epoch.
    train.set_epoch(2)
    again = [b["id"].numpy().tolist() for b in train.dataset]
    assert again == [b.column("id").to_pylist() for b in src.stream(epoch=2)]
    assert again != want and sorted(i for b in again for i in b) == list(range(N))


def test_workers_interleave_like_a_dataloader(client):
    ds = client.dataset(NUMBERS, columns=["id"])
    train = TensorFlowLoader(ds, batch_size=900, seed=3, num_workers=3, rank=1, world_size=2)
    got = [b["id"].numpy().tolist() for b in train]
    src = Loader(ds, batch_size=900, seed=3)
    streams = [src.stream(epoch=0, rank=1, world_size=2, worker=w, num_workers=3) for w in range(3)]
    assert got == [b.column("id").to_pylist() for b in round_robin(streams)]
    assert len(train) == len(got)


def test_resume_from_a_state(client):
    ds = client.dataset(NUMBERS, columns=["id"])
    train = TensorFlowLoader(ds, batch_size=1000, seed=8, num_workers=2)
    full = [b["id"].numpy().tolist() for b in train]
    first = []
    for i, b in enumerate(train):
        first.append(b["id"].numpy().tolist())
        if i == 4:
            break
    state = train.state_dict()
    assert train.state_dict(batches=5) == state  # what model.fit users pass
    again = TensorFlowLoader(ds, batch_size=1000, seed=8, num_workers=2)
    again.load_state_dict(state)
    rest = [b["id"].numpy().tolist() for b in again]
    assert first == full[:5]
    assert sorted(i for b in first + rest for i in b) == list(range(N))
    # The resumed pass is complete: the next one is the whole epoch again.
    assert sum(len(b["id"]) for b in again.dataset) == N


@pytest.mark.filterwarnings("ignore:.*ran out of data:UserWarning", "ignore:.*shuffle=True. was passed:UserWarning")
def test_keras_fit_follows_the_epochs(client):
    import keras

    ds = client.dataset(NUMBERS, columns=["id", "vec", "label"])
    train = TensorFlowLoader(ds, batch_size=2000, seed=1)
    states = []

    class Record(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 3:
                states.append(train.state_dict())

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(7)])
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = model.fit(
        train.dataset.map(lambda b: (b["vec"] / 20000.0, b["label"])),
        epochs=2,
        verbose=0,
        callbacks=[train.keras_callback(), Record()],
    )
    assert len(history.history["loss"]) == 2 and np.isfinite(history.history["loss"]).all()
    assert train.epoch == 1
    src = Loader(ds, batch_size=2000, seed=1)
    # Keras epoch e read the loader's epoch e, and the state at its 4th batch counts 4 batches.
    assert [s["epoch"] for s in states] == [0, 1]
    for e, state in enumerate(states):
        assert state == src.state_dict(epoch=e, batches=4)


def test_columns_that_cannot_become_tensors(client):
    types = "sheaf://test/tables:v1/tables/types.parquet"
    ds = client.dataset(types, columns=["id", "tags", "point"])
    with pytest.raises(
        sheaf.TensorConversionError, match=r"'tags' \(list<.*int64>\), 'point' \(struct<.*columns="
    ) as e:
        TensorFlowLoader(ds)
    assert e.value.column == "tags"
    # Nulls show up while reading: TensorFlow reports the generator's error, which names the column.
    nulls = TensorFlowLoader(client.dataset(types, columns=["id", "score"]), batch_size=500, shuffle=False)
    with pytest.raises(Exception, match=r"column 'score'.*null"):
        list(nulls)


def test_collate_needs_a_signature(client):
    ds = client.dataset(NUMBERS, columns=["id", "name"])
    with pytest.raises(ValueError, match="output_signature"):
        TensorFlowLoader(ds, collate=lambda b: {"n": b.column("id").to_numpy()})
    lengths = TensorFlowLoader(
        ds,
        batch_size=10,
        shuffle=False,
        collate=lambda b: {"len": np.array([len(s) for s in b.column("name").to_pylist()], np.int32)},
        output_signature={"len": tf.TensorSpec((None,), tf.int32)},
    )
    assert next(iter(lengths))["len"].numpy().tolist() == [2] * 10
