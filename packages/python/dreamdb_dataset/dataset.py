"""The seed's API in Python: ``Dataset``, ``compare_refs``, ``agreement_matrix``, ``refs``.

Each call is one request to the TypeScript core through this process's bridge; record
batches stream back as Arrow IPC, so ``iter_arrow_batches`` yields ``pyarrow.RecordBatch``
objects whose buffers are the bytes received (no per-record work in Python).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from . import _bridge
from ._convert import ipc_bytes, records_payload, samples_payload, table_from_ipc
from .errors import InvalidInputError

__all__ = [
    "Dataset",
    "BatchIterator",
    "compare_refs",
    "agreement_matrix",
    "refs",
    "train_embedding_codec",
    "DEFAULT_BACKEND",
]

DEFAULT_BACKEND = "./.dreamdb"
"""The embedded default: a folder, relative to the current directory."""


def _backend(backend: str | os.PathLike[str] | None) -> str:
    """A backend URL the bridge resolves the same way whatever its working directory."""
    value = os.fspath(backend) if backend is not None else os.environ.get("DREAMDB_BACKEND", DEFAULT_BACKEND)
    if not isinstance(value, str) or not value:
        raise InvalidInputError(
            "ERR_CAS_INVALID_URL", f"Invalid backend {value!r}: pass a folder path or a URL", {"url": repr(value)}
        )
    if "://" in value or value.startswith("memory:"):
        return value
    return os.path.abspath(value)


def _schema(schema: Any) -> dict[str, Any]:
    if isinstance(schema, dict) and "fields" in schema:
        return {"fields": list(schema["fields"])}
    if isinstance(schema, (list, tuple)):
        return {"fields": list(schema)}
    raise InvalidInputError(
        "ERR_MANIFEST_INVALID_SCHEMA",
        f"Invalid schema {schema!r}: pass {{'fields': [...]}} or a list of field dicts",
        {"schema": repr(schema)},
    )


class Dataset:
    """A dataset at a branch (writable) or at a pinned state (read-only).

    Picklable: a copy in another process (a DataLoader worker) reopens the same manifest
    through that process's own bridge.
    """

    def __init__(self, backend: str, info: dict[str, Any]) -> None:
        self._backend = backend
        self._handle: int = info["handle"]
        self._pid = os.getpid()
        self._update(info)

    def _update(self, info: dict[str, Any]) -> None:
        self._ref: str | None = info["ref"]
        self._manifest: str = info["manifest"]
        self._fields: list[dict[str, Any]] = info["fields"]
        self._layers: list[dict[str, Any]] = info["layers"]
        self._records: int = info["records"]

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def create(
        cls, name: str, schema: Any, backend: str | os.PathLike[str] | None = None, *, create_bucket: bool = False
    ) -> Dataset:
        """A new dataset whose main branch is ``name``. ``schema`` lists its fields:
        ``{"name": "embedding", "family": "embedding", "dim": 512}``,
        ``{"name": "label", "family": "scalar", "kind": "categorical"}``,
        ``{"name": "image", "family": "binary", "media": "image"}``. On S3, ``create_bucket=True``
        creates the bucket when it does not exist."""
        url = _backend(backend)
        args = {"backend": url, "name": name, "schema": _schema(schema), "createBucket": create_bucket}
        info, _ = _bridge.bridge().call("create", args)
        return cls(url, info)

    @classmethod
    def open_ref(cls, name: str, backend: str | os.PathLike[str] | None = None) -> Dataset:
        """A dataset, branch or snapshot by name (two requests); writable when a branch."""
        url = _backend(backend)
        info, _ = _bridge.bridge().call("openRef", {"backend": url, "name": name})
        return cls(url, info)

    @classmethod
    def open_at(cls, at: dict[str, Any] | str, backend: str | os.PathLike[str] | None = None) -> Dataset:
        """A pinned state, read-only: a snapshot dict (as ``snapshot`` returns), its label, or a manifest CID."""
        url = _backend(backend)
        target = at["manifest"] if isinstance(at, dict) and "manifest" in at else at
        info, _ = _bridge.bridge().call("openAt", {"backend": url, "at": target})
        return cls(url, info)

    def _connected(self) -> _bridge.Bridge:
        """This process's bridge, with this dataset open in it under ``self._handle``."""
        bridge = _bridge.bridge()
        if self._pid != os.getpid() or bridge is not getattr(self, "_bridge_of_handle", bridge):
            self._reopen(bridge)
        self._bridge_of_handle = bridge
        return bridge

    def _call(self, op: str, args: dict[str, Any], data: Any = None) -> tuple[Any, pa.Buffer | None]:
        return self._connected().call(op, {"handle": self._handle, **args}, data)

    def _reopen(self, bridge: _bridge.Bridge) -> None:
        # A new process (or a restarted bridge): the same ref, at the same manifest.
        op, args = ("openAt", {"at": self._manifest}) if self._ref is None else ("openRef", {"name": self._ref})
        info, _ = bridge.call(op, {"backend": self._backend, **args})
        if self._ref is not None and info["manifest"] != self._manifest:
            info, _ = bridge.call("openAt", {"backend": self._backend, "at": self._manifest})
            info["ref"] = self._ref
        self._handle = info["handle"]
        self._pid = os.getpid()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "backend": self._backend,
            "ref": self._ref,
            "manifest": self._manifest,
            "fields": self._fields,
            "layers": self._layers,
            "records": self._records,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._backend = state["backend"]
        self._handle = -1
        self._pid = -1  # reopened on first use
        self._update({**state})

    def __del__(self) -> None:
        try:
            current = _bridge._bridge
            if current is not None and self._pid == os.getpid() and current.pid == self._pid:
                current.release(self._handle)
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def __repr__(self) -> str:
        where = f"ref={self._ref!r}" if self._ref is not None else "pinned"
        return f"<dreamdb_dataset.Dataset {where} manifest={self._manifest[:16]}… records={self._records}>"

    # -- what it is -----------------------------------------------------------------------

    @property
    def ref(self) -> str | None:
        """The branch this dataset writes to, or None when opened at a pinned state."""
        return self._ref

    @property
    def backend(self) -> str:
        return self._backend

    @property
    def fields(self) -> list[dict[str, Any]]:
        """The schema's fields (as dicts) followed by the layers' fields."""
        return [*self._fields, *(layer["field"] for layer in self._layers)]

    @property
    def schema(self) -> dict[str, Any]:
        return {"fields": list(self._fields)}

    @property
    def layers(self) -> list[dict[str, Any]]:
        return list(self._layers)

    @property
    def _inner(self) -> Dataset:
        """The seed's examples write layers through ``branch._inner``; it is the dataset itself."""
        return self

    def __len__(self) -> int:
        return self._records

    def current_manifest(self) -> str:
        """The CID of the manifest this dataset reads."""
        return self._manifest

    def refresh(self) -> str:
        """Re-read the branch head (other writers may have moved it)."""
        info, _ = self._call("refresh", {})
        self._update(info)
        return self._manifest

    def _family(self, name: str) -> str | None:
        for field in self.fields:
            if field["name"] == name:
                return str(field["family"])
        return None

    # -- refs -------------------------------------------------------------------------------

    def snapshot(self, label: str) -> dict[str, Any]:
        """Pin this state: ``{"label", "manifest", "timeline"}``. Never moves."""
        info, _ = self._call("snapshot", {"label": label})
        return dict(info)

    def branch(self, name: str) -> Dataset:
        """A new writable branch at this state (one small write)."""
        info, _ = self._call("branch", {"name": name})
        return Dataset(self._backend, info)

    # -- writes -----------------------------------------------------------------------------

    def append_many(
        self, records: Any, *, bucket_records: int | None = None, message: str | None = None
    ) -> str:
        """Append records (a list of dicts, a ``pyarrow.Table`` or ``RecordBatch``; embeddings
        as numpy arrays or lists) in one commit. Returns the new manifest's CID."""
        families = {f["name"]: f["family"] for f in self._fields}
        table, shape = records_payload(records, families)
        args: dict[str, Any] = dict(shape)
        if bucket_records is not None:
            args["bucketRecords"] = bucket_records
        if message is not None:
            args["message"] = message
        info, _ = self._call("appendMany", args, ipc_bytes(table))
        self._update(info)
        return self._manifest

    def drop_layer(self, name: str, *, message: str | None = None) -> str:
        """Remove a layer from this branch in one commit (a run's predictions that lost a
        sweep); snapshots and other branches keep it. Returns the new manifest CID."""
        return self._drop("dropLayer", name, message)

    def drop_field(self, name: str, *, message: str | None = None) -> str:
        """Remove a base field from this branch in one commit (image bytes once embeddings are
        computed); only the timeline's nodes are written. Snapshots and other branches keep it;
        the last base field and one a layer derives from are refused. Returns the new manifest CID."""
        return self._drop("dropField", name, message)

    def restore(self, source: dict[str, Any] | str, *, message: str | None = None) -> str:
        """Bring back the state of ``source`` (a snapshot dict, a ref name or a manifest CID;
        usually one of this branch's past states, to take back an append) in one commit. The
        history keeps every commit; a commit on the branch since this dataset read it is a
        conflict. Returns the branch's manifest CID (unchanged when already at that state)."""
        return self._from("restore", source, message)

    def merge(self, source: dict[str, Any] | str, *, message: str | None = None) -> str:
        """Merge another branch (a ref name, a snapshot dict or a manifest CID) into this one in
        one commit with two parents: its records appended since they diverged, after this
        branch's, and its layers written or dropped since. Refused (``ERR_DATASET_MERGE_CONFLICT``)
        when it did more than append and write layers, or both changed the same layer. Returns
        the branch's manifest CID (unchanged when already merged)."""
        return self._from("merge", source, message)

    def _from(self, op: str, source: dict[str, Any] | str, message: str | None) -> str:
        target = source["manifest"] if isinstance(source, dict) and "manifest" in source else source
        return self._commit(op, {"from": target}, message)

    def add_fields(self, fields: list[dict[str, Any]], *, message: str | None = None) -> str:
        """Add base fields to this branch in one commit (``init``'s field dicts, e.g.
        ``{"name": "caption", "family": "scalar", "kind": "string"}``); records appended
        before read them as None. Returns the new manifest CID."""
        return self._commit("addFields", {"fields": list(fields)}, message)

    def _drop(self, op: str, name: str, message: str | None) -> str:
        return self._commit(op, {"name": name}, message)

    def _commit(self, op: str, args: dict[str, Any], message: str | None) -> str:
        """One write of this branch through the bridge; this dataset then shows its result."""
        if message is not None:
            args["message"] = message
        info, _ = self._call(op, args)
        self._update(info)
        return self._manifest

    def add_scalar_layer(self, name: str, parent_field: str, kind: str, samples: Any) -> str:
        """Values of a scalar layer (e.g. predictions) for the anchors given: ``[(anchor, value)]``
        or ``(anchors, values)``. Base data is untouched."""
        table, extra = samples_payload(samples, "scalar")
        info, _ = self._call(
            "addScalarLayer", {"name": name, "parentField": parent_field, "kind": kind, **extra}, ipc_bytes(table)
        )
        self._update(info)
        return self._manifest

    def add_embedding_layer(
        self,
        *,
        name: str,
        parent_field: str,
        dim: int,
        samples: Any,
        algorithm: str | None = None,
        spatial_index: str | None = None,
        compressor: str | None = None,
        rerank: bool = False,
        metric: str | None = None,
    ) -> str:
        """An embedding layer (e.g. a student model's outputs), optionally compressed with an
        operator-trained spatial index and compressor (their CIDs)."""
        table, extra = samples_payload(samples, "embedding")
        init: dict[str, Any] = {
            "name": name,
            "parentField": parent_field,
            "dim": dim,
            "algorithm": algorithm,
            "spatialIndex": spatial_index,
            "compressor": compressor,
            "rerank": rerank,
        }
        if metric is not None:
            init["metric"] = metric
        info, _ = self._call("addEmbeddingLayer", {"init": init, **extra}, ipc_bytes(table))
        self._update(info)
        return self._manifest

    def migrate(self, field: str, algorithm: str | None, **options: Any) -> str:
        """Opt an embedding field into IVF + RaBitQ (or back to float32) without re-ingesting."""
        names = {"spatial_index": "spatialIndex"}
        info, _ = self._call(
            "migrate",
            {"options": {"field": field, "algorithm": algorithm, **{names.get(k, k): v for k, v in options.items()}}},
        )
        self._update(info)
        return self._manifest

    def compact(self, target_records: int | None = None) -> str | None:
        """Merge runs of small buckets; every record, anchor and snapshot is kept."""
        options = {} if target_records is None else {"targetRecords": target_records}
        info, _ = self._call("compact", {"options": options})
        manifest = info["manifest"]
        self._update(info)
        return manifest

    # -- reads ------------------------------------------------------------------------------

    def iter_arrow_batches(
        self,
        batch_size: int = 256,
        fields: Sequence[str] | None = None,
        shuffle_seed: int | None = None,
        epoch: int = 0,
        *,
        worker: int = 0,
        num_workers: int = 1,
        rank: int = 0,
        world_size: int = 1,
        time_range: tuple[Any, Any] | None = None,
        resume_from: dict[str, Any] | None = None,
        shuffle_window: int | None = None,
        prefetch: int | None = None,
        batch_range: tuple[int, int] | None = None,
        _sinks: _bridge.SinkFactory | None = None,
        _window: int | None = None,
        _group: int | None = None,
        _source_order: int | None = None,
    ) -> BatchIterator:
        """Stream ``pyarrow.RecordBatch`` objects: ``_anchor`` (uint64) plus one column per
        field; embeddings as ``FixedSizeList<float32>[dim]``. Only the named fields are read.
        ``state()`` after any batch resumes the pass elsewhere with nothing repeated."""
        options: dict[str, Any] = {
            "batchSize": batch_size,
            "epoch": epoch,
            "worker": worker,
            "numWorkers": num_workers,
            "rank": rank,
            "worldSize": world_size,
        }
        given = {
            "fields": None if fields is None else [fields] if isinstance(fields, str) else list(fields),
            "shuffleSeed": shuffle_seed,
            "timeRange": None if time_range is None else [_ms(t) for t in time_range],
            "resumeFrom": resume_from,
            "shuffleWindow": shuffle_window,
            "prefetch": prefetch,
            "batchRange": None if batch_range is None else list(batch_range),
            "sourceOrderRecords": _source_order,
        }
        options.update((key, value) for key, value in given.items() if value is not None)
        bridge = self._connected()
        return BatchIterator(
            bridge.stream("iter", {"handle": self._handle, "options": options}, _sinks, _window, _group)
        )

    def search(
        self,
        field: str,
        query: Any,
        k: int = 10,
        *,
        nprobe: int | None = None,
        rerank: bool | None = None,
        filter: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest records to ``query``: ``(anchors uint64, distances float32)``, closest first."""
        vector = _queries(query, "query", 1)
        _, table = self._search("search", field, vector, k, nprobe, rerank, filter)
        return _hits(table)

    def search_many(
        self,
        field: str,
        queries: Any,
        k: int = 10,
        *,
        nprobe: int | None = None,
        rerank: bool | None = None,
        filter: dict[str, Any] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``search`` for many queries in one call (a 2-d array, one query a row): ``(anchors
        uint64 (n, k), distances float32 (n, k), counts (n,))``, row ``i`` answering query ``i``,
        closest first. Where a query has fewer than ``k`` hits (a small dataset, a filter), its
        row holds anchor 0 and distance +inf past ``counts[i]``."""
        matrix = _queries(queries, "queries", 2)
        info, table = self._search(
            "searchMany", field, matrix, k, nprobe, rerank, filter, {"shape": list(matrix.shape)}
        )
        anchors, distances = _hits(table)
        rows = matrix.shape[0]
        return anchors.reshape(rows, -1), distances.reshape(rows, -1), np.asarray(info["counts"], dtype=np.int64)

    def _search(
        self,
        op: str,
        field: str,
        queries: np.ndarray,
        k: int,
        nprobe: int | None,
        rerank: bool | None,
        filter: dict[str, Any] | None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[Any, pa.Table]:
        given = {"k": k, "nprobe": nprobe, "rerank": rerank, "filter": filter}
        options = {key: value for key, value in given.items() if value is not None}
        info, data = self._call(
            op, {"field": field, "options": options, **(extra or {})}, np.ascontiguousarray(queries, dtype=np.float32)
        )
        assert data is not None
        return info, table_from_ipc(data)

    def inspect(self) -> dict[str, Any]:
        """Everything about this state: buckets, layers, every object, the refs that reach it."""
        info, _ = self._call("inspect", {})
        return dict(info)


class BatchIterator(Iterator[pa.RecordBatch]):
    """Record batches of one pass. ``state()`` after any batch is a small JSON-able dict that
    ``iter_arrow_batches(resume_from=...)`` continues from; ``close()`` stops the pass early."""

    def __init__(self, stream: _bridge.BatchStream) -> None:
        self._stream = stream

    def __iter__(self) -> BatchIterator:
        return self

    def __next__(self) -> pa.RecordBatch:
        buffer = self._stream.next_buffer()
        if buffer is None:
            raise StopIteration
        return pa.ipc.open_stream(buffer).read_next_batch()

    @property
    def last_sink(self) -> _bridge.Sink | None:
        """The shared memory the last batch was written into (with ``_sinks``), else None."""
        return self._stream.last_sink

    def state(self) -> dict[str, Any]:
        if self._stream.end_state is not None:
            return dict(self._stream.end_state)
        state = dict(self._stream.start_state)
        state["nextBatch"] = int(state.get("nextBatch", 0)) + self._stream.received
        return state

    def close(self) -> None:
        self._stream.cancel()

    def __enter__(self) -> BatchIterator:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._stream.abandon()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass


def _ms(t: Any) -> float:
    if hasattr(t, "timestamp"):
        return float(t.timestamp() * 1000)
    return float(t)


def compare_refs(
    refs: Sequence[str], fields: Sequence[str], backend: str | os.PathLike[str] | None = None
) -> pa.Table:
    """One wide table: ``_anchor`` plus ``field@ref`` per field and ref, one row per anchor."""
    _, data = _bridge.bridge().call(
        "compareRefs", {"backend": _backend(backend), "refs": list(refs), "fields": list(fields)}
    )
    assert data is not None
    return table_from_ipc(data)


def agreement_matrix(table: pa.Table, field: str, refs: Sequence[str]) -> dict[str, Any]:
    """Pairwise agreement of ``field`` across ``refs`` from a ``compare_refs`` table:
    ``{"agreement": [[...]], "overlap": [[...]], "counts": [...]}``."""
    wanted = [f"{field}@{ref}" for ref in refs]
    present = [name for name in wanted if name in table.column_names]
    info, _ = _bridge.bridge().call(
        "agreementMatrix", {"field": field, "refs": list(refs)}, ipc_bytes(table.select(present))
    )
    return dict(info)


def refs(backend: str | os.PathLike[str] | None = None, prefix: str = "") -> list[dict[str, Any]]:
    """Every branch and snapshot: ``[{"name", "kind", "manifest"}]``."""
    info, _ = _bridge.bridge().call("refs", {"backend": _backend(backend), "prefix": prefix})
    return list(info)


def train_embedding_codec(
    vectors: Any,
    algorithm: str = "dreamdb.ivf-cosine",
    *,
    lists: int | None = None,
    bits: int = 1,
    seed: int = 0,
    backend: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Train a spatial index on sample vectors (a 2-d array) and create a compressor, save both
    in the store, and return ``{"spatial_index", "compressor", "algorithm", "dim"}``: what an
    operator publishes for ``add_embedding_layer(..., spatial_index=, compressor=)``."""
    matrix = np.asarray(vectors)
    if matrix.ndim != 2 or matrix.dtype.kind not in "fiu":
        raise InvalidInputError(
            "ERR_DATASET_INVALID_OPTION",
            f"Invalid vectors of dtype {matrix.dtype} and shape {matrix.shape}: a 2-d numeric array",
            {"option": "vectors"},
        )
    options: dict[str, Any] = {"algorithm": algorithm, "dim": int(matrix.shape[1]), "bits": bits, "seed": seed}
    if lists is not None:
        options["lists"] = lists
    info, _ = _bridge.bridge().call(
        "trainEmbeddingCodec",
        {"backend": _backend(backend), "options": options},
        np.ascontiguousarray(matrix, dtype=np.float32),
    )
    return {
        "spatial_index": info["spatialIndex"],
        "compressor": info["compressor"],
        "algorithm": info["algorithm"],
        "dim": info["dim"],
    }


def _queries(value: Any, option: str, ndim: int) -> np.ndarray:
    """A query vector (``ndim`` 1) or a non-empty matrix of them, one a row (``ndim`` 2)."""
    array = np.asarray(value)
    if array.dtype.kind not in "fiu" or array.ndim != ndim or array.shape[0] == 0:
        wanted = "a non-empty 1-d numeric vector" if ndim == 1 else "a non-empty 2-d numeric array, one query a row"
        raise InvalidInputError(
            "ERR_DATASET_INVALID_OPTION",
            f"Invalid {option} of dtype {array.dtype} and shape {array.shape}: {wanted}",
            {"option": option},
        )
    return array


def _hits(table: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """The anchors and distances of a search answer, as numpy arrays."""
    return (
        table.column("anchor").to_numpy().astype(np.uint64, copy=False),
        table.column("distance").to_numpy().astype(np.float32, copy=False),
    )
