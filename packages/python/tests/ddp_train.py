"""One rank of a DDP run (torchrun, gloo, CPU) over a DreamDB dataset, for test_torch.py.

Each step trains a tiny model on the batch and records, with the loader's state, which
anchors it consumed (an empty batch is a step too, so every rank stays in step). With
--kill-at-step N, rank 0 SIGKILLs itself after saving step N; --resume continues from the
saved states."""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal

import numpy as np
import torch
import torch.distributed as dist
from torchdata.stateful_dataloader import StatefulDataLoader

import dreamdb_dataset as vd
from dreamdb_dataset.torch import DreamDBDataset


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--backend", required=True)
    parser.add_argument("--snapshot", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-at-step", type=int, default=-1)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    pinned = vd.Dataset.open_at(args.snapshot, backend=args.backend)
    dataset = DreamDBDataset(pinned, fields=["embedding", "label"], batch_size=32, shuffle_seed=7)
    dataset.set_epoch(1)
    loader = StatefulDataLoader(dataset, batch_size=None, num_workers=args.workers, snapshot_every_n_steps=1)
    state_path = os.path.join(args.out, f"rank{rank}.state")
    consumed: list[int] = []
    steps = 0
    if args.resume:
        with open(state_path, "rb") as f:
            saved = pickle.load(f)
        loader.load_state_dict(saved["loader"])
        consumed, steps = saved["consumed"], saved["steps"]
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(16, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    for batch in loader:
        x = torch.as_tensor(batch["embedding"])
        logits = model(x)
        target = torch.tensor([int(v) % 10 for v in batch["label"]], dtype=torch.long)
        # An empty batch still joins the all-reduce: a zero loss with a graph.
        loss = torch.nn.functional.cross_entropy(logits, target) if len(target) else logits.sum() * 0
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        consumed.extend(int(a) for a in np.asarray(batch["_anchor"]))
        steps += 1
        temporary = state_path + ".tmp"
        with open(temporary, "wb") as f:
            pickle.dump({"loader": loader.state_dict(), "consumed": consumed, "steps": steps}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, state_path)
        if rank == 0 and steps == args.kill_at_step and not args.resume:
            os.kill(os.getpid(), signal.SIGKILL)
    with open(os.path.join(args.out, f"rank{rank}.json"), "w") as f:
        json.dump({"anchors": consumed, "steps": steps}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
