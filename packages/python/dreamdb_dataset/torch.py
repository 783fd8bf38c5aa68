"""``DreamDBDataset``: a PyTorch ``IterableDataset`` over a pinned dataset.

Yields batches (dicts of numpy arrays, or tensors with ``as_tensors=True``) for
``DataLoader(batch_size=None, num_workers=N)``. Every epoch's batches are numbered
``0 .. ceil(records / batch_size) - 1`` in one deterministic order (seed, epoch, manifest);
each rank x worker takes a contiguous share of the batches not yet done, computed in
``__iter__`` (never in ``__init__``, where workers and ranks are not known yet).

- Exactly once: every record is yielded once per epoch across all ranks and workers.
- Even steps: shares differ by at most one batch; with ``drop_last=False`` (default) the
  shorter ones end with an empty batch (zero rows) so every rank steps the same number of
  times and DDP never waits on a rank that ran out; with ``drop_last=True`` the longer
  shares drop their last batch instead (those records are skipped this epoch).
- Shared memory: in a DataLoader worker (``shared_memory=None``, the default, on Linux) the
  bridge writes each batch into a memory file and the numeric columns come out as torch
  tensors over it, the tensors DataLoader would have made of the numpy arrays, without its
  copy into shared memory; ``shared_memory=False`` keeps numpy arrays (for a ``collate_fn``
  that wants them), ``True`` asks for tensors outside workers too.
- Resume: ``state_dict()`` says which batches are done; ``load_state_dict()`` continues the
  epoch with nothing repeated or skipped, with the same or another number of workers or
  ranks. Works inside torchdata's ``StatefulDataLoader`` (its per-worker states can be
  merged with ``DreamDBDataset.merge_states`` to resume with another worker count).
"""

from __future__ import annotations

import collections
import itertools
import math
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

try:  # memory files are reused where leases tell when nothing maps them (Linux)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

import numpy as np
import pyarrow as pa

from . import _bridge
from .dataset import Dataset
from .errors import InvalidInputError

__all__ = ["DreamDBDataset", "batch_to_numpy"]

try:  # torch is optional for the rest of the package, required here
    import torch
    from torch.utils.data import IterableDataset, get_worker_info
except ImportError as error:  # pragma: no cover - exercised only without torch
    raise ImportError("dreamdb_dataset.torch needs PyTorch: pip install torch") from error

STATE_FORMAT = "dreamdb.torch/1"
Ranges = list[list[int]]


class _Lent:
    """Lends numpy the bytes of an Arrow buffer, writable, and keeps that buffer alive."""

    def __init__(self, data: pa.Buffer, address: int, dtype: np.dtype, count: int) -> None:
        self.owner = data
        self.__array_interface__ = {"data": (address, False), "shape": (count,), "typestr": dtype.str, "version": 3}


_DTYPES: dict[pa.DataType, np.dtype | None] = {}


def _dtype_of(kind: pa.DataType) -> np.dtype | None:
    """The numpy dtype of a primitive Arrow type (None for anything else), looked up once."""
    try:
        return _DTYPES[kind]
    except KeyError:
        primitive = pa.types.is_primitive(kind) and not pa.types.is_boolean(kind)
        found = _DTYPES[kind] = np.dtype(kind.to_pandas_dtype()) if primitive else None
        return found


def _numpy_of(array: pa.Array, start: int = 0, count: int | None = None) -> np.ndarray:
    """A numpy view of a primitive Arrow array (its values ``start .. start + count``), writable
    (no copy)."""
    dtype = _dtype_of(array.type)
    if dtype is not None and array.null_count == 0:
        count = len(array) - start if count is None else count
        data = array.buffers()[1]
        if data is not None and count > 0:
            # The bytes were received into a buffer of this batch alone (see _bridge), so a
            # writable view is safe; torch.from_numpy then needs no copy and warns of nothing.
            address = data.address + (array.offset + start) * dtype.itemsize
            return np.asarray(_Lent(data, address, dtype, count))
    values = array.to_numpy(zero_copy_only=False)
    return values[start:] if count is None else values[start : start + count]


class _Words:
    """The last dictionary seen as numpy strings: the batches of one pass share one."""

    last: tuple[pa.Array, np.ndarray] | None = None  # one tuple: threads swap it whole

    @classmethod
    def of(cls, dictionary: pa.Array) -> np.ndarray:
        last = cls.last
        if last is not None and dictionary.equals(last[0]):
            return last[1]
        words = dictionary.to_numpy(zero_copy_only=False)
        cls.last = (dictionary, words)
        return words


def batch_to_numpy(batch: pa.RecordBatch) -> dict[str, Any]:
    """A record batch as the seed's dict: ``_anchor`` uint64, embeddings ``(n, dim)`` float32,
    categorical and string fields as object arrays of str, binary fields as lists of bytes."""
    out: dict[str, Any] = {}
    n = batch.num_rows
    for name, column in zip(batch.schema.names, batch.columns):
        kind = column.type
        if pa.types.is_fixed_size_list(kind):
            dim = kind.list_size
            if column.null_count == 0:
                # The child values under this batch's rows, without flatten()'s new array.
                out[name] = _numpy_of(column.values, column.offset * dim, n * dim).reshape(n, dim)
            else:  # records from before the field existed: NaN rows
                rows = [np.full(dim, np.nan, np.float32) if v is None else np.asarray(v, np.float32) for v in column.to_pylist()]
                out[name] = np.stack(rows)
        elif pa.types.is_dictionary(kind):
            if column.null_count == 0:
                out[name] = _Words.of(column.dictionary)[column.indices.to_numpy(zero_copy_only=False)]
            else:
                out[name] = np.array(column.to_pylist(), dtype=object)
        elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
            out[name] = column.to_pylist()
        else:
            out[name] = _numpy_of(column)
    return out


def _to_tensors(batch: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in batch.items():
        if isinstance(value, np.ndarray) and value.dtype.kind in "fiub":
            out[name] = torch.from_numpy(value.astype(np.int64) if value.dtype == np.uint64 else value)
        else:
            out[name] = value
    return out


_SINK_NUMBERS = itertools.count()

#: ``fcntl``'s F_SETLEASE (Linux; not every Python names it).
_F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)


class _MemoryFile:
    """A memory file (memfd) a sink writes into, kept for the next sinks once nothing maps it.

    The descriptor kept here is a second open of the file (through /proc), which the kernel
    counts among the file's writers; every batch's torch storage gets a third open of its
    own, shared by whatever holds it (its dups in this worker and in DataLoader's resource
    sharer, the training process's copy and mapping). A write lease on the kept descriptor
    is granted only when it is the file's one writer: no storage over the file is left in
    any process, so the bridge may write the next batches there (design/0007)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        name = f"dreamdb-batch-{os.getpid()}-{next(_SINK_NUMBERS)}"
        self.link = f"/memfd:{name} (deleted)"
        created = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(created, capacity)
            self.fd = os.open(f"/proc/self/fd/{created}", os.O_RDWR | os.O_CLOEXEC)
        finally:
            os.close(created)
        self.path = f"/proc/{os.getpid()}/fd/{self.fd}"

    def unused(self) -> bool:
        """True when no storage over this file is left anywhere (see the class docstring)."""
        if fcntl is None:
            return False
        try:
            fcntl.fcntl(self.fd, _F_SETLEASE, fcntl.F_WRLCK)
        except OSError:
            return False
        fcntl.fcntl(self.fd, _F_SETLEASE, fcntl.F_UNLCK)
        return True

    def storage(self, nbytes: int) -> Any:
        """A torch storage over the first ``nbytes``, on an open of the file of its own."""
        opened = os.open(f"/proc/self/fd/{self.fd}", os.O_RDWR | os.O_CLOEXEC)
        try:
            # torch maps the file and keeps a dup of this descriptor (the one it will send).
            return torch.UntypedStorage._new_shared_fd_cpu(opened, nbytes)
        finally:
            os.close(opened)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _MemoryFiles:
    """This process's memory files whose batches went out, oldest first: a sink takes the
    first one nothing maps any more, so the bridge writes into pages that exist already
    instead of new ones the kernel must allocate and zero (and free again after training
    drops the batch). A worker keeps at most ``KEEP`` (each holds up to a group's bytes)."""

    KEEP = 16
    #: Files looked at per sink: the oldest are the likeliest to be free.
    LOOK = 4

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.files: collections.deque[_MemoryFile] = collections.deque()

    def take(self, capacity: int) -> _MemoryFile:
        if self.pid != os.getpid():
            # Inherited through fork: the parent's files are the parent's to reuse.
            for file in self.files:
                file.close()
            self.files.clear()
            self.pid = os.getpid()
        for _ in range(min(self.LOOK, len(self.files))):
            file = self.files.popleft()
            if file.capacity >= capacity and file.unused():
                return file
            self.files.append(file)
        return _MemoryFile(capacity)

    def give_back(self, file: _MemoryFile) -> None:
        if self.pid != os.getpid():
            file.close()
            return
        self.files.append(file)
        while len(self.files) > self.KEEP:
            self.files.popleft().close()


_MEMORY_FILES = _MemoryFiles()


class _SharedSink:
    """A memory file that the bridge writes one group of batches into, then a torch storage
    over it. The batch's tensors are views of that storage, which torch already counts as
    shared: DataLoader hands the training process its file descriptor instead of copying
    every tensor into shared memory of its own (design/0007). The file is sized generously
    but sparse: only the pages the bridge writes exist. Once the bridge has written it, the
    file goes back to this process's pool, for a later sink once nothing maps it."""

    def __init__(self, capacity: int) -> None:
        self._file: _MemoryFile | None = _MEMORY_FILES.take(capacity)
        self.capacity = self._file.capacity
        self.path = self._file.path
        self.link = self._file.link
        self.storage: Any = None

    def buffer(self, nbytes: int) -> pa.Buffer:
        file = self._file
        assert file is not None
        self._file = None
        self.storage = file.storage(nbytes)
        # The bridge is done with it (it closed the file before naming the batches).
        _MEMORY_FILES.give_back(file)
        return pa.foreign_buffer(self.storage.data_ptr(), nbytes, base=self.storage)

    def __del__(self) -> None:
        # Offered, never written: the bridge may have it still (an abandoned stream), so it
        # is not reused; closing our descriptor leaves the bridge's open of it alone.
        if self._file is not None:
            self._file.close()
            self._file = None


def _sinks_available() -> bool:
    """Sinks need memory files and torch's file-descriptor sharing (the default on Linux)."""
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "memfd_create")
        and torch.multiprocessing.get_sharing_strategy() == "file_descriptor"
    )


_TORCH_DTYPES: dict[np.dtype, Any] = {}


def _torch_dtype(dtype: np.dtype) -> Any:
    found = _TORCH_DTYPES.get(dtype)
    if found is None:
        found = _TORCH_DTYPES[dtype] = torch.from_numpy(np.empty(0, dtype)).dtype
    return found


def _shared_tensors(batch: dict[str, Any], storage: Any, anchors_int64: bool) -> dict[str, Any]:
    """Numeric arrays as tensors: views of ``storage`` where their bytes lie in it (no copy,
    and DataLoader sends the storage as it is), else ``torch.from_numpy``. The same tensors
    DataLoader's default conversion would make of the numpy arrays."""
    base = storage.data_ptr() if storage is not None else 0
    end = base + (storage.nbytes() if storage is not None else 0)
    out: dict[str, Any] = {}
    for name, value in batch.items():
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
            out[name] = value
            continue
        address = value.__array_interface__["data"][0]
        tensor = None
        if (
            storage is not None
            and value.flags.c_contiguous
            and base <= address
            and address + value.nbytes <= end
            and (address - base) % value.itemsize == 0
        ):
            tensor = torch.empty(0, dtype=_torch_dtype(value.dtype)).set_(
                storage, (address - base) // value.itemsize, value.shape
            )
        if tensor is None:
            tensor = torch.from_numpy(value)
        if anchors_int64 and value.dtype == np.uint64:
            # What as_tensors has always given: the same 64 bits as int64 (astype wraps alike).
            tensor = tensor.view(torch.int64)
        out[name] = tensor
    return out


def _merge(ranges: Ranges) -> Ranges:
    out: Ranges = []
    for start, end in sorted((int(s), int(e)) for s, e in ranges if e > s):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


def _complement(done: Ranges, total: int) -> Ranges:
    out: Ranges = []
    at = 0
    for start, end in _merge(done):
        if start > at:
            out.append([at, min(start, total)])
        at = max(at, end)
    if at < total:
        out.append([at, total])
    return [r for r in out if r[1] > r[0]]


def _share(remaining: Ranges, part: int, parts: int) -> tuple[Ranges, int]:
    """Partition ``part`` of ``parts``: a contiguous share of the remaining batches, and the
    longest share's length (every partition steps that many times)."""
    count = sum(e - s for s, e in remaining)
    first = count * part // parts
    last = count * (part + 1) // parts
    mine: Ranges = []
    seen = 0
    for start, end in remaining:
        lo = max(start, start + first - seen)
        hi = min(end, start + last - seen)
        if hi > lo:
            mine.append([lo, hi])
        seen += end - start
    return mine, math.ceil(count / parts) if parts else 0


def _rank_and_world() -> tuple[int, int]:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover
        pass
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


class DreamDBDataset(IterableDataset):  # type: ignore[type-arg]
    """Batches of a pinned dataset for ``DataLoader(dataset, batch_size=None, num_workers=N)``."""

    def __init__(
        self,
        dataset: Dataset,
        fields: Sequence[str] | None = None,
        batch_size: int = 256,
        shuffle_seed: int | None = None,
        *,
        epoch: int = 0,
        drop_last: bool = False,
        as_tensors: bool = False,
        prefetch: int | None = None,
        shared_memory: bool | None = None,
    ) -> None:
        if not isinstance(dataset, Dataset):
            raise InvalidInputError(
                "ERR_DATASET_INVALID_OPTION",
                f"Invalid dataset {type(dataset).__name__}: pass a dreamdb_dataset.Dataset",
                {"option": "dataset"},
            )
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise InvalidInputError(
                "ERR_DATASET_INVALID_OPTION",
                f"Invalid batchSize {batch_size!r}: must be an integer from 1",
                {"option": "batchSize", "value": repr(batch_size)},
            )
        # Pinned: a branch that moves during training would change what "this epoch" means.
        self.dataset = dataset if dataset.ref is None else Dataset.open_at(dataset.current_manifest(), dataset.backend)
        self.fields = list(fields) if fields is not None else None
        self.batch_size = batch_size
        self.shuffle_seed = shuffle_seed
        self.epoch = epoch
        self.drop_last = drop_last
        self.as_tensors = as_tensors
        self.prefetch = prefetch
        self.shared_memory = shared_memory
        self._loaded: dict[str, Any] | None = None
        self._progress: dict[str, Any] | None = None

    @property
    def total_batches(self) -> int:
        """Batches in one epoch, across every rank and worker."""
        return math.ceil(len(self.dataset) / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """A new deterministic order (call before each epoch, as with ``DistributedSampler``)."""
        self.epoch = epoch

    # -- state ------------------------------------------------------------------------------

    def _identity(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "manifest": self.dataset.current_manifest(),
            "batchSize": self.batch_size,
            "fields": self.fields,
            "shuffleSeed": self.shuffle_seed,
        }

    def state_dict(self) -> dict[str, Any]:
        """Which of the epoch's batches are done (in this process's view)."""
        progress = self._progress
        if progress is None:
            base = self._loaded or {**self._identity(), "epoch": self.epoch, "done": []}
            return {**base, "done": [list(r) for r in base["done"]]}
        done = [list(r) for r in progress["done"]]
        left = progress["yielded"]
        for start, end in progress["assigned"]:
            take = min(left, end - start)
            if take > 0:
                done.append([start, start + take])
            left -= take
        return {
            **self._identity(),
            "epoch": progress["epoch"],
            "done": _merge(done),
            "partition": progress["partition"],
            "partitions": progress["partitions"],
            "assigned": progress["assigned"],
            "yielded": progress["yielded"],
            "startDone": progress["done"],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the epoch ``state`` describes (from ``state_dict`` or ``merge_states``)."""
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise InvalidInputError(
                "ERR_DATASET_RESUME_MISMATCH",
                f"Resume state mismatch on format: expected {STATE_FORMAT!r}, got {state.get('format') if isinstance(state, dict) else type(state).__name__!r}",
                {"key": "format"},
            )
        for key, ours in self._identity().items():
            if state.get(key) != ours:
                raise InvalidInputError(
                    "ERR_DATASET_RESUME_MISMATCH",
                    f"Resume state mismatch on {key}: expected {ours!r}, got {state.get(key)!r}",
                    {"key": key, "expected": ours, "actual": state.get(key)},
                )
        self.epoch = int(state["epoch"])
        self._loaded = dict(state)
        self._progress = None

    @staticmethod
    def merge_states(states: Any) -> dict[str, Any]:
        """One state from several (per-worker or per-rank states, or a whole
        ``StatefulDataLoader.state_dict()`` searched for them): the union of what is done."""
        found: list[dict[str, Any]] = []

        def visit(value: Any) -> None:
            if isinstance(value, dict):
                if value.get("format") == STATE_FORMAT:
                    found.append(value)
                    return
                for v in value.values():
                    visit(v)
            elif isinstance(value, (list, tuple)):
                for v in value:
                    visit(v)

        visit(states)
        if not found:
            raise InvalidInputError("ERR_DATASET_RESUME_MISMATCH", "No DreamDB state found to merge", {})
        first = found[0]
        for other in found[1:]:
            for key in ("manifest", "batchSize", "fields", "shuffleSeed", "epoch"):
                if other.get(key) != first.get(key):
                    raise InvalidInputError(
                        "ERR_DATASET_RESUME_MISMATCH",
                        f"Resume states disagree on {key}: {first.get(key)!r} and {other.get(key)!r}",
                        {"key": key},
                    )
        done: Ranges = []
        for state in found:
            done.extend(state["done"])
        base = {k: first[k] for k in ("format", "manifest", "batchSize", "fields", "shuffleSeed", "epoch")}
        return {**base, "done": _merge(done)}

    # -- iteration --------------------------------------------------------------------------

    def _plan(self) -> tuple[int, int, Ranges, int, Ranges]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world = _rank_and_world()
        partition, partitions = rank * workers + worker, world * workers
        loaded = self._loaded if self._loaded is not None and int(self._loaded["epoch"]) == self.epoch else None
        if loaded is not None and loaded.get("partitions") == partitions and loaded.get("partition") == partition:
            # The same partition of the same layout: finish its own share.
            start_done = [list(r) for r in loaded["startDone"]]
            assigned = [list(r) for r in loaded["assigned"]]
            remaining = _complement(start_done, self.total_batches)
            steps = _share(remaining, partition, partitions)[1]
            return partition, partitions, start_done, int(loaded["yielded"]), assigned if steps else []
        done = [list(r) for r in loaded["done"]] if loaded is not None else []
        remaining = _complement(done, self.total_batches)
        assigned, _ = _share(remaining, partition, partitions)
        return partition, partitions, done, 0, assigned

    def _shared(self) -> bool:
        if self.shared_memory is not None:
            return self.shared_memory and _sinks_available()
        return get_worker_info() is not None and _sinks_available()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        partition, partitions, done, yielded, assigned = self._plan()
        shared = self._shared()
        if get_worker_info() is not None and _bridge.read_threads is None:
            # This worker's bridge shares the cores with the other workers' (design/0007).
            _bridge.read_threads = False
        self._loaded = None
        remaining = _complement(done, self.total_batches)
        count = sum(e - s for s, e in remaining)
        steps = count // partitions if self.drop_last else math.ceil(count / partitions)
        self._progress = {
            "epoch": self.epoch,
            "partition": partition,
            "partitions": partitions,
            "done": done,
            "assigned": assigned,
            "yielded": yielded,
        }
        progress = self._progress
        skip = yielded
        emitted = yielded
        for start, end in assigned:
            if skip >= end - start:
                skip -= end - start
                continue
            batches = self._range(start + skip, end, shared)
            skip = 0
            try:
                for batch in batches:
                    if emitted >= steps:
                        break
                    emitted += 1
                    progress["yielded"] = emitted
                    yield batch
            finally:
                batches.close()
        while emitted < steps:
            # An empty batch keeps every rank stepping together (see the module docstring).
            emitted += 1
            progress["yielded"] = emitted
            yield _shared_tensors(self._empty(), None, self.as_tensors) if shared else self._empty()
        self._progress = None

    def _range(self, start: int, end: int, shared: bool) -> Iterator[dict[str, Any]]:
        """The epoch's batches ``start .. end - 1``, converted. With sinks, the bridge sends
        ``k`` batches as one (a batch of ``k * batch_size`` records in the same order: the
        shuffle window is the one ``batch_size`` implies, and rows are in source order
        batch_size by batch_size), converted once and cut here
        without a copy, since the bridge's and the stream's work per batch is most of what
        a small batch costs (design/0007)."""
        k = self._transfer_factor() if shared else 1
        first, last = start // k, -(-end // k)
        stream = self.dataset.iter_arrow_batches(
            batch_size=self.batch_size * k,
            fields=self.fields,
            shuffle_seed=self.shuffle_seed,
            epoch=self.epoch,
            shuffle_window=max(4 * self.batch_size, 4096) if k > 1 else None,
            # A shuffled batch's rows come in source order: of each batch_size, not of k of them.
            _source_order=self.batch_size if k > 1 else None,
            batch_range=(first, last),
            prefetch=self.prefetch,
            _sinks=_SharedSink if shared else None,
            # Transfers in flight and in one sink: about what single batches would have.
            _window=max(4, _bridge.BatchStream.SINK_WINDOW // k) if k > 1 else None,
            _group=1 if k > 1 else None,
        )
        try:
            skip, left = start - first * k, end - start
            for whole in stream:
                if not shared:
                    yield self._convert(whole)
                    continue
                storage = getattr(stream.last_sink, "storage", None)
                batch = _shared_tensors(batch_to_numpy(whole), storage, self.as_tensors)
                if k == 1:
                    yield batch
                    continue
                rows = whole.num_rows
                for i in range(skip, k):
                    if left == 0:
                        return
                    left -= 1
                    lo = min(i * self.batch_size, rows)
                    hi = min(lo + self.batch_size, rows)
                    # Views (tensors, numpy arrays) or short lists: no copy of the values.
                    yield {name: value[lo:hi] for name, value in batch.items()}
                skip = 0
        finally:
            stream.close()

    def _transfer_factor(self) -> int:
        """Batches the bridge sends as one: up to 8, about 4 MB at most; 1 with a binary field
        (its size is not known ahead)."""
        record = 8  # _anchor
        for field in self.dataset.fields:
            if self.fields is not None and field["name"] not in self.fields:
                continue
            if self.fields is None and field not in self.dataset.schema["fields"]:
                continue
            if field["family"] == "binary":
                return 1
            record += 4 * int(field["dim"]) if field["family"] == "embedding" else 8
        return max(1, min(8, (4 << 20) // (record * self.batch_size)))

    def _convert(self, batch: pa.RecordBatch) -> dict[str, Any]:
        out = batch_to_numpy(batch)
        return _to_tensors(out) if self.as_tensors else out

    def _empty(self) -> dict[str, Any]:
        out: dict[str, Any] = {"_anchor": np.zeros(0, np.uint64)}
        for field in self.dataset.fields:
            if self.fields is not None and field["name"] not in self.fields:
                continue
            if self.fields is None and field not in self.dataset.schema["fields"]:
                continue
            if field["family"] == "embedding":
                out[field["name"]] = np.zeros((0, int(field["dim"])), np.float32)
            elif field["family"] == "binary":
                out[field["name"]] = []
            else:
                out[field["name"]] = np.zeros(0, dtype=object)
        return _to_tensors(out) if self.as_tensors else out
