"""The seed tutorial, sections 2 to 7, and its three Patterns, in Python on real MNIST digits,
on a folder and on MinIO; every value read back is compared with what was appended."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import dreamdb_dataset as vd
from conftest import MNIST_SCHEMA, mnist

PER_CLASS = 40


def by_anchor(ds: vd.Dataset, fields: list[str], **options: Any) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for batch in ds.iter_arrow_batches(fields=fields, **options):
        rows = batch.to_pylist()
        for row in rows:
            anchor = row.pop("_anchor")
            assert anchor not in out, f"anchor {anchor} yielded twice"
            out[anchor] = row
    return out


def test_seed_sections_2_to_7(backend: dict[str, Any]) -> None:
    records = mnist(PER_CLASS)
    url = backend["url"]
    created = vd.Dataset.create("mnist", schema=MNIST_SCHEMA, backend=url, create_bucket=backend["create_bucket"])
    created.append_many(records)

    # 2. Open + snapshot
    ds = vd.Dataset.open_ref("mnist", backend=url)
    assert ds.current_manifest() == created.current_manifest()
    snap = ds.snapshot(f"model-v2-prep-{int(time.time())}")
    assert set(snap) == {"label", "manifest", "timeline"}
    assert snap["manifest"] == ds.current_manifest()

    # 3. Stream as Arrow batches: embeddings as FixedSizeList<float32>[49], labels as strings
    pinned = vd.Dataset.open_at(snap, backend=url)
    seen: dict[int, tuple[np.ndarray, str]] = {}
    for batch in pinned.iter_arrow_batches(batch_size=64, fields=["embedding", "label"], shuffle_seed=42):
        assert isinstance(batch, pa.RecordBatch)
        assert batch.schema.field("_anchor").type == pa.uint64()
        embs = batch.column("embedding").values.to_numpy(zero_copy_only=False)
        embs = embs.reshape(batch.num_rows, 49)
        labels = batch.column("label").to_pylist()
        for anchor, emb, label in zip(batch.column("_anchor").to_pylist(), embs, labels):
            seen[anchor] = (emb.copy(), label)
    assert len(seen) == len(records)
    # Anchors are minted in append order: anchor i + 1 is records[i].
    for anchor, (emb, label) in seen.items():
        original = records[anchor - 1]
        assert emb.tobytes() == original["embedding"].astype(np.float32).tobytes()
        assert label == original["label"]
    # Images come back byte for byte, and only when asked for.
    images = by_anchor(pinned, ["image"])
    assert all(images[a]["image"] == records[a - 1]["image"] for a in images)
    # Another epoch, another order; the same seed and epoch, the same order.
    order = lambda epoch: [  # noqa: E731
        a for b in pinned.iter_arrow_batches(batch_size=50, fields=["label"], shuffle_seed=42, epoch=epoch)
        for a in b.column("_anchor").to_pylist()
    ]
    assert order(0) == order(0) and order(0) != order(1) and sorted(order(1)) == sorted(order(0))

    # 4. PyTorch DataLoader integration
    torch = pytest.importorskip("torch")
    from dreamdb_dataset.torch import DreamDBDataset

    train_ds = DreamDBDataset(dataset=pinned, fields=["embedding", "label"], batch_size=128, shuffle_seed=42)
    loader = torch.utils.data.DataLoader(train_ds, batch_size=None, num_workers=2)
    label_to_idx = {str(d): d for d in range(10)}
    anchors: list[int] = []
    for batch in loader:
        embs = torch.as_tensor(batch["embedding"])
        labels = torch.tensor([label_to_idx[x] for x in batch["label"]])
        assert embs.shape == (len(labels), 49)
        anchors.extend(int(a) for a in batch["_anchor"])
    assert sorted(anchors) == list(range(1, len(records) + 1))

    # 5. The sweep pattern: a branch per configuration, predictions as a scalar layer
    src = vd.Dataset.open_ref("mnist", backend=url)
    baseline = src.snapshot("sweep-baseline")
    train = {a: v for a, v in seen.items() if records[a - 1]["split"] == "train"}
    centroids = {
        label: np.mean([emb for emb, lab in train.values() if lab == label], axis=0) for label in label_to_idx
    }
    run_refs = []
    truth = {a: v[1] for a, v in seen.items()}
    for i, shrink in enumerate([0.0, 0.5, 0.9]):
        ref_name = f"sweep/lp-shrink{shrink}"
        branch = src.branch(ref_name)
        mean = np.mean(list(centroids.values()), axis=0)
        protos = {lab: (1 - shrink) * c + shrink * mean for lab, c in centroids.items()}
        predictions = [
            (anchor, min(protos, key=lambda lab: float(np.sum((emb - protos[lab]) ** 2))))
            for anchor, (emb, _) in seen.items()
        ]
        branch._inner.add_scalar_layer("prediction", "embedding", "categorical", predictions)
        run_refs.append(ref_name)
        # The base data of the branch is untouched; the prediction joins by anchor.
        joined = by_anchor(vd.Dataset.open_ref(ref_name, backend=url), ["label", "prediction"])
        assert {a: r["prediction"] for a, r in joined.items()} == dict(predictions)
        assert {a: r["label"] for a, r in joined.items()} == truth
        assert i >= 0
    assert vd.Dataset.open_ref("sweep-baseline", backend=url).current_manifest() == baseline["manifest"]

    # 6. Compare runs side by side
    table = vd.compare_refs(refs=run_refs, fields=["prediction"], backend=url)
    assert table.column_names == ["_anchor", *[f"prediction@{r}" for r in run_refs]]
    assert table.num_rows == len(records)
    assert table.column("_anchor").to_pylist() == sorted(seen)
    matrix = vd.agreement_matrix(table, "prediction", run_refs)
    assert matrix["counts"] == [len(records)] * 3
    assert all(matrix["agreement"][i][i] == 1 for i in range(3))
    summaries = []
    for ref in run_refs:
        column = table.column(f"prediction@{ref}").to_pylist()
        val = [a for a in table.column("_anchor").to_pylist() if records[a - 1]["split"] == "validation"]
        acc = np.mean([column[a - 1] == truth[a] for a in val])
        summaries.append({"ref": ref, "val_acc": acc, "model_hash": f"{abs(hash(ref)) % 10**8:08d}"})

    # 7. Tag the winner; months later, inspect answers "what data trained this model?"
    best_run = max(summaries, key=lambda s: s["val_acc"])
    # The worst run's predictions are dropped from its branch (one commit); the runs compared
    # above keep theirs, and a snapshot taken before the drop still holds it.
    worst = min(summaries, key=lambda s: s["val_acc"])["ref"]
    loser = vd.Dataset.open_ref(worst, backend=url)
    kept = loser.snapshot(f"{worst.replace('/', '-')}-before-drop")
    loser.drop_layer("prediction", message="lost the sweep")
    assert [layer["name"] for layer in vd.Dataset.open_ref(worst, backend=url).layers] == []
    assert [layer["name"] for layer in vd.Dataset.open_at(kept["label"], backend=url).layers] == ["prediction"]
    tag = src.snapshot(f"prod-2026-05-15-{best_run['model_hash']}")
    inspection = vd.Dataset.open_ref(tag["label"], backend=url).inspect()
    assert inspection["manifest"] == src.current_manifest()
    assert sum(b["records"] for b in inspection["buckets"]) == len(records)
    names = {r["name"] for r in vd.refs(backend=url)}
    assert {"mnist", "sweep-baseline", tag["label"], *run_refs} <= names


def test_patterns(backend: dict[str, Any]) -> None:
    records = mnist(20)
    url = backend["url"]
    vd.Dataset.create("corpus", schema=MNIST_SCHEMA, backend=url, create_bucket=backend["create_bucket"])

    # Active learning: the corpus grows; snapshots stay pinned.
    ds = vd.Dataset.open_ref("corpus", backend=url)
    ds.append_many(records[:100])
    snaps = []
    for iteration in range(3):
        snap = ds.snapshot(f"iter-{iteration}")
        snaps.append(snap)
        hard = records[100 + 30 * iteration : 100 + 30 * (iteration + 1)]
        ds.append_many(hard)  # a list of dicts, embeddings as numpy arrays
    for iteration, snap in enumerate(snaps):
        assert len(vd.Dataset.open_at(snap, backend=url)) == 100 + 30 * iteration
    assert len(vd.Dataset.open_ref("corpus", backend=url)) == 190
    # ...and as a pyarrow Table
    table = pa.table(
        {
            "image": pa.array([r["image"] for r in records[190:]], pa.binary()),
            "embedding": pa.FixedSizeListArray.from_arrays(
                pa.array(np.stack([r["embedding"] for r in records[190:]]).reshape(-1)), 49
            ),
            "label": [r["label"] for r in records[190:]],
            "split": [r["split"] for r in records[190:]],
        }
    )
    ds.append_many(table)
    got = by_anchor(vd.Dataset.open_ref("corpus", backend=url), ["image", "embedding", "label", "split"])
    assert len(got) == len(records)
    for anchor, row in got.items():
        original = records[anchor - 1]
        assert row["image"] == original["image"]
        assert np.asarray(row["embedding"], np.float32).tobytes() == original["embedding"].tobytes()
        assert (row["label"], row["split"]) == (original["label"], original["split"])

    # Embeddings only: a branch without the image bytes, whose schema and rows no longer have
    # them; the corpus keeps its images.
    light = vd.Dataset.open_ref("corpus", backend=url).branch("embeddings-only")
    light.drop_field("image", message="images stay on corpus")
    assert [f["name"] for f in light.fields] == ["embedding", "label", "split"]
    light_rows = by_anchor(vd.Dataset.open_ref("embeddings-only", backend=url), ["embedding", "label"])
    assert sorted(light_rows) == sorted(got)
    batch = next(iter(vd.Dataset.open_ref("embeddings-only", backend=url).iter_arrow_batches()))
    assert batch.schema.names == ["_anchor", "embedding", "label", "split"]
    assert by_anchor(vd.Dataset.open_ref("corpus", backend=url), ["image"])[1]["image"] == records[0]["image"]
    # A bad batch taken back: the branch returns to a snapshot's state in one commit.
    light_snap = light.snapshot("embeddings-only-v1")
    light.append_many([{k: v for k, v in r.items() if k != "image"} for r in records[:2]])
    assert len(vd.Dataset.open_ref("embeddings-only", backend=url)) == len(records) + 2
    light.restore(light_snap, message="take back the duplicates")
    assert len(vd.Dataset.open_ref("embeddings-only", backend=url)) == len(records)
    # A branch takes another's new records by a merge; the embeddings-only branch cannot
    # (the records merged in hold images, a field it dropped).
    grow = vd.Dataset.open_ref("corpus", backend=url).branch("grow")
    vd.Dataset.open_ref("corpus", backend=url).branch("more").append_many(records[:3])
    grow.merge("more", message="the new records")
    assert len(vd.Dataset.open_ref("grow", backend=url)) == len(records) + 3
    with pytest.raises(vd.DreamDBError) as refused:
        light.merge("more")
    assert refused.value.code == "ERR_DATASET_MERGE_CONFLICT" and "'image'" in str(refused.value)
    # ...and a field from now on: the records before read it as None.
    light.add_fields([{"name": "source", "family": "scalar", "kind": "string"}])
    assert [f["name"] for f in light.fields] == ["embedding", "label", "split", "source"]
    sources = by_anchor(vd.Dataset.open_ref("embeddings-only", backend=url), ["source"])
    assert {row["source"] for row in sources.values()} == {None}

    # Linear probe on a frozen backbone: embeddings already in the dataset.
    pinned = vd.Dataset.open_at(snaps[0], backend=url)
    dim = 49
    W = np.zeros((10, dim), np.float32)
    for _ in range(3):
        for batch in pinned.iter_arrow_batches(fields=["embedding", "label"]):
            embs = batch.column("embedding").values.to_numpy().reshape(-1, dim)
            y = np.asarray([int(v) for v in batch.column("label").to_pylist()])
            logits = W @ embs.T
            p = np.exp(logits - logits.max(axis=0))
            p /= p.sum(axis=0)
            p[y, np.arange(len(y))] -= 1
            W -= 0.5 * (p @ embs) / len(y)
    assert np.isfinite(W).all() and np.abs(W).sum() > 0

    # Distillation: a student's outputs as a new, smaller, compressed embedding layer on a
    # branch, with the spatial index and compressor an operator trained and published.
    branch = vd.Dataset.open_ref("corpus", backend=url).branch("distill/student")
    anchors = np.arange(1, len(records) + 1, dtype=np.uint64)
    rng = np.random.default_rng(0)
    projection = rng.standard_normal((49, 16)).astype(np.float32)
    student_outputs = np.stack([r["embedding"] for r in records]) @ projection
    trained = vd.train_embedding_codec(student_outputs, "dreamdb.ivf-cosine", lists=8, bits=4, backend=url)
    student_si_hash, student_vc_hash = trained["spatial_index"], trained["compressor"]
    branch.add_embedding_layer(
        name="embedding_student",
        parent_field="image",
        dim=16,  # student is smaller
        algorithm="dreamdb.ivf-cosine",
        spatial_index=student_si_hash,  # operator-trained
        compressor=student_vc_hash,  # operator-published
        rerank=False,
        samples=list(zip(anchors.tolist(), student_outputs)),  # [(anchor, vector), ...]
    )
    layer = next(layer for layer in branch.layers if layer["name"] == "embedding_student")
    assert layer["field"]["compressor"] == student_vc_hash and layer["field"]["algorithm"] == "dreamdb.ivf-cosine"
    got = by_anchor(vd.Dataset.open_ref("distill/student", backend=url), ["embedding_student"])
    assert len(got) == len(records)
    for anchor, row in got.items():
        decoded = np.asarray(row["embedding_student"], np.float32)
        want = student_outputs[anchor - 1]
        # 4-bit RaBitQ codes, decoded: close to the student's output, not equal.
        assert float(decoded @ want / (np.linalg.norm(decoded) * np.linalg.norm(want))) > 0.95
    hits, distances = branch.search("embedding", records[7]["embedding"], k=3)
    assert hits[0] == 8 and distances[0] == pytest.approx(0, abs=1e-5)
    # Many queries in one call: row i answers query i, as `search` would.
    queries = np.stack([records[7]["embedding"], records[3]["embedding"], records[20]["embedding"]])
    anchors_many, distances_many, counts = branch.search_many("embedding", queries, k=3)
    assert anchors_many.shape == (3, 3) and distances_many.shape == (3, 3) and counts.tolist() == [3, 3, 3]
    for row, query in enumerate(queries):
        one_hits, one_distances = branch.search("embedding", query, k=3)
        assert anchors_many[row].tolist() == one_hits.tolist()
        assert distances_many[row] == pytest.approx(one_distances, abs=1e-6)
    assert anchors_many[:, 0].tolist() == [8, 4, 21]
    # Fewer records than k: the rest of each row is anchor 0 at +inf.
    wide, wide_distances, wide_counts = branch.search_many("embedding", queries[:1], k=len(records) + 2)
    assert wide_counts.tolist() == [len(records)]
    assert wide[0, len(records) :].tolist() == [0, 0] and np.isinf(wide_distances[0, len(records) :]).all()
    # The student's compressed layer is searched through its own index.
    student_hits, _ = branch.search("embedding_student", student_outputs[7], k=5)
    assert 8 in student_hits.tolist()
    student_many, _, _ = branch.search_many("embedding_student", student_outputs[[7, 3]], k=5)
    assert student_many[0].tolist() == student_hits.tolist()
