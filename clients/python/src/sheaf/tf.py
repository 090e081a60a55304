"""TensorFlow integration: a dataset's epochs as a ``tf.data.Dataset`` of
``{column: tf.Tensor}`` batches, in the same order, sharding and resume state
as :mod:`sheaf.torch` (both follow :class:`sheaf.loader.Loader`).

>>> train = ds.to_tensorflow(batch_size=512, seed=7, num_workers=2)  # doctest: +SKIP
>>> for epoch in range(3):                                            # doctest: +SKIP
...     train.set_epoch(epoch)
...     for batch in train:              # {"x": tf.Tensor, ...}; or model.fit(train.dataset)
...         ...
...     checkpoint = train.state_dict()

:attr:`TensorFlowLoader.dataset` is the ``tf.data.Dataset`` (built with
``tf.data.Dataset.from_generator`` and an ``output_signature`` derived from
the Arrow schema: numbers and booleans become ``(batch,)`` tensors,
fixed-size lists ``(batch, size, ...)`` tensors, strings and binaries
``tf.string``). With ``num_workers=K`` it interleaves K generators, each
reading its own part of the rank's rows (``cycle_length=K, block_length=1``,
deterministic), exactly as a torch DataLoader with K workers hands out
batches. Needs TensorFlow (``pip install 'sheaf[tensorflow]'``, or
``tensorflow-cpu``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

try:
    import tensorflow as tf
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("sheaf.tf needs TensorFlow: pip install 'sheaf[tensorflow]' (or tensorflow-cpu)") from e

from sheaf.arrays import EpochAdapter, _Pass, check_schema, to_numpy

if TYPE_CHECKING:
    from sheaf.dataset import Dataset

__all__ = ["TensorFlowLoader", "signature"]


def _spec(t: pa.DataType) -> tuple[Any, tuple[int, ...]]:
    """(tf dtype, shape of one row) of a column type that passed :func:`check_schema` with strings."""
    if pa.types.is_fixed_size_list(t):
        dtype, inner = _spec(t.value_type)
        return dtype, (t.list_size, *inner)
    if pa.types.is_boolean(t):
        return tf.bool, ()
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return tf.as_dtype(t.to_pandas_dtype()), ()
    return tf.string, ()


def signature(schema: pa.Schema, what: str = "dataset") -> dict[str, tf.TensorSpec]:
    """The ``output_signature`` of batches of ``schema``: a ``tf.TensorSpec``
    per column, of shape ``(None, ...)``. Raises
    :class:`~sheaf.TensorConversionError` naming the columns that cannot
    become tensors."""
    check_schema(schema, what, strings=True, target="tensors")
    out = {}
    for field in schema:
        dtype, shape = _spec(field.type)
        out[field.name] = tf.TensorSpec(shape=(None, *shape), dtype=dtype, name=field.name)
    return out


class TensorFlowLoader(EpochAdapter):
    """One rank's batches of a dataset for TensorFlow. Create it with
    :meth:`sheaf.Dataset.to_tensorflow`.

    :attr:`dataset` is the ``tf.data.Dataset``; each time it is iterated (a
    ``for`` loop, ``model.fit`` each epoch) it reads the epoch chosen with
    :meth:`set_epoch`, from where :meth:`load_state_dict` left it. Iterate
    the loader itself to have :meth:`state_dict` count the batches handed
    out; when ``model.fit`` (or another consumer) iterates :attr:`dataset`,
    pass the batches consumed to ``state_dict(batches=...)``.

    Args:
        dataset: the planned read.
        batch_size: rows per batch.
        rank, world_size: this process's place among several (e.g. the
            ``task_id`` and worker count of a ``MultiWorkerMirroredStrategy``).
        num_workers: generators read in parallel and interleaved (each with
            its own part of the rank's rows, like DataLoader workers).
        collate: a function of a ``pyarrow.RecordBatch`` returning a dict of
            numpy arrays; with it, give ``output_signature`` too.
        output_signature: the batches' ``tf.TensorSpec`` dict (default: from
            the schema, see :func:`signature`).
        prefetch_batches: batches ``tf.data`` prefetches (default
            ``tf.data.AUTOTUNE``; 0 for none).
        options: :class:`sheaf.loader.Loader`'s (``seed``, ``shuffle``,
            ``shuffle_buffer``, ``drop_last``, ``equal_batches``,
            ``prefetch`` (windows each worker reads ahead), ...).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1024,
        *,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 1,
        collate: Callable[[pa.RecordBatch], dict[str, Any]] | None = None,
        output_signature: dict[str, tf.TensorSpec] | None = None,
        prefetch_batches: int | None = None,
        **options: Any,
    ) -> None:
        if collate is not None and output_signature is None:
            raise ValueError(f"{dataset.name}: with collate=, give output_signature= (the tf.TensorSpec of each key)")
        super().__init__(dataset, batch_size, rank, world_size, num_workers, options)
        self.collate = collate
        self.output_signature = output_signature or signature(self._source.schema, self._name)
        self.dataset = self._build(tf.data.AUTOTUNE if prefetch_batches is None else prefetch_batches)

    def __repr__(self) -> str:
        return (
            f"<sheaf.tf.TensorFlowLoader {self._name}: {self._source.num_rows:,} rows, epoch={self._epoch}, "
            f"rank {self.rank} of {self.world_size}, {self.num_workers} worker(s)>"
        )

    def _generate(self, worker: Any) -> Iterator[dict[str, Any]]:
        """The batches of one worker, for ``from_generator`` (runs when TensorFlow starts a pass)."""
        epoch, start = self._epoch, self._resume
        current = self._pass
        if current is None or current.epoch != epoch or current.start is not start:
            current = self._pass = _Pass(epoch, start)
        stream = self._source.stream(
            epoch=epoch,
            rank=self.rank,
            world_size=self.world_size,
            worker=int(worker),
            num_workers=self.num_workers,
            state=start,
        )
        try:
            for batch in stream:
                yield self.collate(batch) if self.collate is not None else to_numpy(batch, self._name)
        finally:
            stream.close()
        current.finished += 1
        if current.finished == self.num_workers and self._resume is start:
            self._resume = None  # the resumed pass is complete: the next one starts the epoch afresh

    def _build(self, prefetch: int) -> tf.data.Dataset:
        signature = self.output_signature
        if self.num_workers == 1:
            out = tf.data.Dataset.from_generator(self._generate, args=(0,), output_signature=signature)
        else:
            out = tf.data.Dataset.range(self.num_workers).interleave(
                lambda w: tf.data.Dataset.from_generator(self._generate, args=(w,), output_signature=signature),
                cycle_length=self.num_workers,
                block_length=1,
                num_parallel_calls=self.num_workers,
                deterministic=True,
            )
        return out.prefetch(prefetch) if prefetch else out

    def __iter__(self) -> Iterator[dict[str, tf.Tensor]]:
        """Iterates :attr:`dataset`, counting the batches handed out for :meth:`state_dict`."""
        current = self._pass = _Pass(self._epoch, self._resume)
        for batch in self.dataset:
            current.batches += 1
            yield batch

    def state_dict(self, batches: int | None = None) -> dict[str, Any]:
        """Where this rank is in the current epoch (a plain, JSON-able dict).

        ``batches``: how many batches of this pass were consumed; default:
        those this loader's own iteration handed out. With several ranks,
        merge every rank's state with :func:`sheaf.loader.merge_state_dicts`
        before resuming on another topology."""
        return self._state(batches)

    def keras_callback(self) -> Any:
        """A ``keras.callbacks.Callback`` for ``model.fit(loader.dataset,
        callbacks=[loader.keras_callback()])``: each Keras epoch ``e`` reads
        epoch ``e``'s order (:meth:`set_epoch` at ``on_epoch_begin``), and
        the batches Keras consumed are counted, so :meth:`state_dict` needs no
        ``batches=``. To resume mid-epoch, :meth:`load_state_dict`, then
        finish that epoch with its own ``fit(..., initial_epoch=e,
        epochs=e + 1)`` (Keras takes the first epoch's batch count for the
        following ones)."""
        import keras

        owner = self

        class SheafEpochs(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                owner.set_epoch(epoch)
                owner._pass = _Pass(owner._epoch, owner._resume)

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                if owner._pass is not None:
                    owner._pass.batches = batch + 1

        return SheafEpochs()
