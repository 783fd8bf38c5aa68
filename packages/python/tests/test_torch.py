"""DreamDBDataset in DataLoader and DDP: every record exactly once per epoch across ranks and
workers, the same number of steps on every rank, and exact resumption."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import dreamdb_dataset as vd  # noqa: E402
from dreamdb_dataset.torch import DreamDBDataset  # noqa: E402

HERE = Path(__file__).resolve().parent
N = 1000


@pytest.fixture
def pinned(folder: str) -> vd.Dataset:
    ds = vd.Dataset.create(
        "d",
        schema=[
            {"name": "embedding", "family": "embedding", "dim": 16},
            {"name": "label", "family": "scalar", "kind": "categorical"},
        ],
        backend=folder,
    )
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((N, 16)).astype(np.float32)
    vectors[:, 0] = np.arange(N)  # a record's first component tells its anchor (anchor - 1)
    ds.append_many([{"embedding": vectors[i], "label": str(i % 10)} for i in range(N)], bucket_records=128)
    return vd.Dataset.open_at(ds.snapshot("train"), backend=folder)


def epoch(loader: Any) -> tuple[list[int], int]:
    anchors: list[int] = []
    steps = 0
    for batch in loader:
        a = np.asarray(batch["_anchor"]).astype(np.int64)
        e = np.asarray(batch["embedding"])
        assert e.shape == (len(a), 16)
        assert (e[:, 0] == a - 1).all(), "a vector arrived with another record's anchor"
        anchors.extend(a.tolist())
        steps += 1
    return anchors, steps


@pytest.mark.parametrize("workers", [0, 2, 3])
def test_every_record_once_per_epoch(pinned: vd.Dataset, workers: int) -> None:
    dataset = DreamDBDataset(pinned, fields=["embedding", "label"], batch_size=64, shuffle_seed=3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
    orders = []
    for e in range(2):
        dataset.set_epoch(e)
        anchors, steps = epoch(loader)
        assert sorted(anchors) == list(range(1, N + 1))
        assert steps == workers_steps(N, 64, max(workers, 1))
        orders.append(anchors)
    assert orders[0] != orders[1], "set_epoch gave the same order"
    dataset.set_epoch(0)
    assert epoch(loader)[0] == orders[0], "the same epoch gave another order"


def workers_steps(n: int, batch: int, parts: int) -> int:
    batches = -(-n // batch)
    return parts * -(-batches // parts)


def test_ranks_step_together(pinned: vd.Dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    steps = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "3")
        dataset = DreamDBDataset(pinned, fields=["embedding"], batch_size=100, shuffle_seed=5)
        anchors, count = epoch(torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2))
        seen.extend(anchors)
        steps.append(count)
    assert sorted(seen) == list(range(1, N + 1))
    assert len(set(steps)) == 1, f"ranks stepped {steps} times"


def test_drop_last_gives_full_batches_only(pinned: vd.Dataset) -> None:
    dataset = DreamDBDataset(pinned, fields=["embedding"], batch_size=64, drop_last=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=3)
    anchors, steps = epoch(loader)
    assert len(set(anchors)) == len(anchors)
    assert steps == 3 * (16 // 3)


@pytest.mark.parametrize("before, after", [(0, 0), (0, 3), (2, 0)])
def test_resume_mid_epoch_with_another_worker_count(pinned: vd.Dataset, before: int, after: int) -> None:
    dataset = DreamDBDataset(pinned, fields=["embedding", "label"], batch_size=50, shuffle_seed=9, epoch=4)
    if before == 0:
        it = iter(dataset)
        first = [np.asarray(next(it)["_anchor"]).tolist() for _ in range(7)]
        state = dataset.state_dict()
        consumed = sum(first, [])
    else:
        from torchdata.stateful_dataloader import StatefulDataLoader

        loader = StatefulDataLoader(dataset, batch_size=None, num_workers=before)
        consumed = []
        for i, batch in enumerate(loader):
            consumed.extend(np.asarray(batch["_anchor"]).tolist())
            if i == 6:
                state = DreamDBDataset.merge_states(loader.state_dict())
                break
    resumed = DreamDBDataset(pinned, fields=["embedding", "label"], batch_size=50, shuffle_seed=9)
    resumed.load_state_dict(json.loads(json.dumps(state)))  # a state survives JSON
    rest, _ = epoch(torch.utils.data.DataLoader(resumed, batch_size=None, num_workers=after))
    both = consumed + rest
    assert sorted(both) == list(range(1, N + 1)), f"{len(both)} anchors, {len(set(both))} distinct"


def test_a_worker_batch_arrives_as_views_of_one_shared_memory_file(pinned: vd.Dataset) -> None:
    # The bridge wrote the batch into a memory file; DataLoader sent its descriptor, not copies.
    dataset = DreamDBDataset(pinned, fields=["embedding"], batch_size=256)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1)
    shared = [b["embedding"].untyped_storage().data_ptr() == b["_anchor"].untyped_storage().data_ptr() for b in loader]
    assert shared == [True] * 4
    inside = DreamDBDataset(pinned, fields=["embedding"], batch_size=256, shared_memory=True)
    assert [b["_anchor"].dtype for b in inside] == [torch.uint64] * 4


def test_batches_sent_several_as_one_are_the_same_batches(pinned: vd.Dataset) -> None:
    # With sinks the bridge sends 8 batches of 100 as one of 800 (bucket boundaries inside,
    # shuffled windows of 400) and the worker cuts them: the same batches as one by one.
    def batches(shared: bool) -> list[dict[str, Any]]:
        dataset = DreamDBDataset(pinned, batch_size=100, shuffle_seed=5, epoch=1, shared_memory=shared)
        if shared:
            assert dataset._transfer_factor() == 8
        dataset.load_state_dict({**dataset.state_dict(), "done": [[0, 1]]})  # from batch 1: not aligned
        return list(dataset)

    for one, other in zip(batches(True), batches(False), strict=True):
        assert one["_anchor"].dtype == torch.uint64
        assert np.array_equal(one["_anchor"].numpy(), other["_anchor"])
        assert np.array_equal(one["embedding"].numpy(), other["embedding"])
        assert list(one["label"]) == list(other["label"])


def memory_file_of(batch: dict[str, Any]) -> str:
    """The memory file a batch's tensors map, by its name (unique per file a worker made)."""
    fd = batch["embedding"].untyped_storage()._share_fd_cpu_()[0]
    return os.readlink(f"/proc/self/fd/{fd}")


def test_a_memory_file_is_written_again_only_once_no_batch_maps_it(pinned: vd.Dataset) -> None:
    # 1000 records in batches of 10, sent 8 at a time: 13 memory files a pass when none is reused.
    dataset = DreamDBDataset(pinned, fields=["embedding"], batch_size=10, shuffle_seed=2, as_tensors=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=1, persistent_workers=True)
    kept = list(loader)  # the training process keeps every batch of this pass
    copies = [(b["_anchor"].clone(), b["embedding"].clone()) for b in kept]
    kept_files = {memory_file_of(b) for b in kept}
    for _ in range(2):
        written = {memory_file_of(batch) for batch in loader}  # each dropped after its step
        assert not written & kept_files, "the bridge wrote into a file a kept batch maps"
    for batch, (anchors, vectors) in zip(kept, copies, strict=True):
        assert torch.equal(batch["_anchor"], anchors) and torch.equal(batch["embedding"], vectors)
    del kept, batch
    written = set()
    for _ in range(3):
        anchors = []
        for batch in loader:
            assert (batch["embedding"][:, 0] == batch["_anchor"] - 1).all()
            anchors.extend(batch["_anchor"].tolist())
            written.add(memory_file_of(batch))
        assert sorted(anchors) == list(range(1, N + 1))
    assert len(written) < 3 * 13, f"{len(written)} memory files for 3 passes: none was written again"


def test_a_batch_too_large_for_its_sink_or_a_sink_the_bridge_cannot_open_takes_the_pipe(
    pinned: vd.Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dreamdb_dataset import torch as vt

    monkeypatch.setattr(vd._bridge.BatchStream, "SINK_BYTES", 4096)  # the first batches do not fit
    dataset = DreamDBDataset(pinned, fields=["embedding", "label"], batch_size=100, shared_memory=True, as_tensors=True)
    anchors, steps = epoch(dataset)
    assert sorted(anchors) == list(range(1, N + 1)) and steps == 10

    class Unreachable(vt._SharedSink):
        def __init__(self, capacity: int) -> None:
            super().__init__(capacity)
            self.path = "/nonexistent/dreamdb-sink"

    class Reused(vt._SharedSink):  # its descriptor number now names another file
        def __init__(self, capacity: int) -> None:
            super().__init__(capacity)
            self.link = "/memfd:another-file (deleted)"

    for sink in (Unreachable, Reused):
        monkeypatch.setattr(vt, "_SharedSink", sink)
        anchors, steps = epoch(dataset)
        assert sorted(anchors) == list(range(1, N + 1)) and steps == 10
        # Every batch took the pipe (a sink's batch has one storage under all its tensors).
        assert not any(b["embedding"].untyped_storage().data_ptr() == b["_anchor"].untyped_storage().data_ptr() for b in dataset)


def test_a_state_from_other_options_is_refused(pinned: vd.Dataset) -> None:
    state = DreamDBDataset(pinned, batch_size=50).state_dict()
    with pytest.raises(vd.InvalidInputError) as caught:
        DreamDBDataset(pinned, batch_size=64).load_state_dict(state)
    assert caught.value.code == "ERR_DATASET_RESUME_MISMATCH" and "batchSize" in str(caught.value)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun(tmp: Path, backend: str, snapshot: str, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={free_port()}", "--master_addr=127.0.0.1",
         str(HERE / "ddp_train.py"), "--backend", backend, "--snapshot", snapshot, "--out", str(tmp), *extra],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp,
    )


def test_torchrun_two_ranks_two_workers_exactly_once_and_resume_after_kill(pinned: vd.Dataset, tmp_path: Path) -> None:
    pytest.importorskip("torchdata")
    snapshot = pinned.current_manifest()
    clean = tmp_path / "clean"
    clean.mkdir()
    done = torchrun(clean, pinned.backend, snapshot)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = [json.loads((clean / f"rank{r}.json").read_text()) for r in range(2)]
    union = runs[0]["anchors"] + runs[1]["anchors"]
    assert sorted(union) == list(range(1, N + 1)), f"{len(union)} anchors, {len(set(union))} distinct"
    assert runs[0]["steps"] == runs[1]["steps"]

    killed = tmp_path / "killed"
    killed.mkdir()
    crashed = torchrun(killed, pinned.backend, snapshot, "--kill-at-step", "4")
    assert crashed.returncode != 0, "rank 0 should have been killed"
    resumed = torchrun(killed, pinned.backend, snapshot, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    runs = [json.loads((killed / f"rank{r}.json").read_text()) for r in range(2)]
    union = runs[0]["anchors"] + runs[1]["anchors"]
    assert sorted(union) == list(range(1, N + 1)), f"{len(union)} anchors, {len(set(union))} distinct"
