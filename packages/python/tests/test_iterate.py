"""iter_arrow_batches from Python: resume state, partitions, projection, early close."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

import dreamdb_dataset as vd

N = 600


@pytest.fixture
def ds(folder: str) -> vd.Dataset:
    ds = vd.Dataset.create(
        "d",
        schema=[
            {"name": "embedding", "family": "embedding", "dim": 4},
            {"name": "label", "family": "scalar", "kind": "string"},
            {"name": "blob", "family": "binary", "media": "bytes"},
        ],
        backend=folder,
    )
    ds.append_many(
        [{"embedding": np.full(4, i, np.float32), "label": f"r{i}", "blob": bytes([i % 256]) * (i % 7)} for i in range(N)],
        bucket_records=64,
    )
    return ds


def anchors(batches: object) -> list[int]:
    return [a for b in batches for a in b.column("_anchor").to_pylist()]  # type: ignore[attr-defined]


def test_resume_from_a_state_taken_mid_pass(ds: vd.Dataset) -> None:
    stream = ds.iter_arrow_batches(batch_size=50, shuffle_seed=3, epoch=2)
    first = anchors(next(stream) for _ in range(4))
    state = json.loads(json.dumps(stream.state()))  # small and JSON-able
    stream.close()
    assert state["nextBatch"] == 4
    rest = anchors(ds.iter_arrow_batches(batch_size=50, shuffle_seed=3, epoch=2, resume_from=state))
    assert sorted(first + rest) == list(range(1, N + 1))
    with pytest.raises(vd.InvalidInputError) as caught:
        list(ds.iter_arrow_batches(batch_size=60, shuffle_seed=3, epoch=2, resume_from=state))
    assert caught.value.code == "ERR_DATASET_RESUME_MISMATCH"


def test_partitions_cover_every_record_once(ds: vd.Dataset) -> None:
    seen: list[int] = []
    steps = []
    for rank in range(2):
        for worker in range(3):
            batches = list(
                ds.iter_arrow_batches(batch_size=32, worker=worker, num_workers=3, rank=rank, world_size=2)
            )
            steps.append(len(batches))
            seen.extend(anchors(batches))
    assert sorted(seen) == list(range(1, N + 1))
    assert len(set(steps)) == 1


def test_projection_and_values(ds: vd.Dataset) -> None:
    for batch in ds.iter_arrow_batches(batch_size=100, fields=["blob", "label"]):
        assert batch.schema.names == ["_anchor", "blob", "label"]
        assert batch.schema.field("blob").type == pa.binary()
        for a, blob, label in zip(batch.column("_anchor").to_pylist(), batch.column("blob").to_pylist(), batch.column("label").to_pylist()):
            i = a - 1
            assert blob == bytes([i % 256]) * (i % 7) and label == f"r{i}"


def test_closing_early_then_other_calls(ds: vd.Dataset) -> None:
    with ds.iter_arrow_batches(batch_size=10) as stream:
        next(stream)
    assert len(anchors(ds.iter_arrow_batches(batch_size=200, fields=["label"]))) == N


def test_batches_with_and_without_nulls_in_one_pass(ds: vd.Dataset) -> None:
    # A layer with values for the first 250 records only: batches with nulls, then without
    # (each batch's schema says which; the bridge reuses encoded schemas by nullability).
    ds.add_scalar_layer("score", "label", "float", [(a, float(a)) for a in range(1, 251)])
    seen = {}
    for batch in ds.iter_arrow_batches(batch_size=100, fields=["score"]):
        for a, score in zip(batch.column("_anchor").to_pylist(), batch.column("score").to_pylist()):
            seen[a] = score
    assert seen == {a: float(a) if a <= 250 else None for a in range(1, N + 1)}


def test_batches_larger_than_the_pipe_arrive_whole_while_python_reads_slowly(folder: str) -> None:
    # 2 MB batches: the bridge writes what the pipe takes at once and queues the rest.
    import time

    dim, n = 512, 3000
    big = vd.Dataset.create("big", schema=[{"name": "embedding", "family": "embedding", "dim": dim}], backend=folder)
    big.append_many([{"embedding": np.full(dim, i, np.float32)} for i in range(n)], bucket_records=1024)
    seen = []
    for batch in big.iter_arrow_batches(batch_size=1000, fields=["embedding"]):
        time.sleep(0.05)  # the pipe fills while Python sleeps
        rows = batch.column("embedding").values.to_numpy(zero_copy_only=False).reshape(batch.num_rows, dim)
        anchors = np.asarray(batch.column("_anchor").to_pylist())
        assert (rows == (anchors - 1)[:, None]).all(), "a row arrived with another record's values"
        seen.extend(anchors.tolist())
    assert seen == list(range(1, n + 1))
