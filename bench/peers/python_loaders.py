"""The Python side of bench/python.ts: DreamDB's Python client and PyTorch loaders next to
a plain pyarrow-Parquet IterableDataset and Lance's torch loader, on the same records.

Usage:
  python_loaders.py prepare <arrow-ipc-stream> <work dir>
      Write the records DreamDB exported as Parquet (uncompressed and snappy, row groups of
      65 536) and as a Lance dataset (fragments of 131 072 rows, so workers can split it).
  python_loaders.py serve <work dir> <dreamdb backend> <batch size>
      Read JSON requests, one a line, on stdin; answer one JSON line each on stdout:
      {"reader": name} times one full pass of that reader; {"coldstarts": n} times n cold
      starts of the bridge. Loaders (and their persistent workers) live across requests.
  python_loaders.py rss <reader> <work dir> <dreamdb backend> <batch size>
      In this fresh process, one pass of the reader while a thread samples the peak resident
      set (VmHWM) of this process and of every descendant: DataLoader workers and bridges.

The dreamdb_dataset package comes from PYTHONPATH (packages/python), not from a wheel.
Every loader yields the same thing: dreamdb_dataset.torch.batch_to_numpy of each Arrow
batch (embedding (n, 128) float32, label as str), which DataLoader turns into tensors.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

FIELDS = ["embedding", "label"]
ROW_GROUP = 65_536
LANCE_FRAGMENT = 131_072


def prepare(source: str, work: str) -> None:
    import lance
    import pyarrow.ipc as ipc

    with pa.memory_map(source) as f:
        table = ipc.open_stream(f).read_all().select(FIELDS)
    for compression in ("none", "snappy"):
        pq.write_table(table, f"{work}/data-{compression}.parquet", row_group_size=ROW_GROUP, compression=compression)
    lance.write_dataset(table, f"{work}/data.lance", mode="overwrite", max_rows_per_file=LANCE_FRAGMENT)


# -- readers ------------------------------------------------------------------------------


def to_numpy(batch: Any, **_: Any) -> dict[str, Any]:
    from dreamdb_dataset.torch import batch_to_numpy

    return batch_to_numpy(batch)


def make_parquet_dataset(path: str, batch_size: int) -> Any:
    from torch.utils.data import IterableDataset, get_worker_info

    class ParquetIterable(IterableDataset):  # type: ignore[type-arg]
        """The usual plain loader: row groups split across workers in __iter__."""

        def __init__(self, path: str, batch_size: int) -> None:
            self.path = path
            self.batch_size = batch_size

        def __iter__(self):  # type: ignore[no-untyped-def]
            info = get_worker_info()
            worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
            # memory_map: pyarrow's documented option for local files, the peer's cheapest
            # configuration here (CPU per pass 0.61-0.67 s against 0.80-0.86 without, one
            # process; pre_buffer and use_threads=False changed nothing measurable).
            file = pq.ParquetFile(self.path, memory_map=True)
            groups = list(range(worker, file.num_row_groups, workers))
            for batch in file.iter_batches(batch_size=self.batch_size, row_groups=groups, columns=FIELDS):
                yield to_numpy(batch)

    return ParquetIterable(path, batch_size)


class Readers:
    def __init__(self, work: str, backend: str, batch_size: int) -> None:
        self.work = work
        self.backend = backend
        self.batch_size = batch_size
        self.loaders: dict[str, Any] = {}

    def dataset(self) -> Any:
        import dreamdb_dataset as vd

        return vd.Dataset.open_ref("vectors", backend=self.backend)

    def loader(self, name: str) -> Any:
        if name in self.loaders:
            return self.loaders[name]
        from torch.utils.data import DataLoader

        kind, workers = name.rsplit("_dl", 1)
        if kind == "dreamdb":
            from dreamdb_dataset.torch import DreamDBDataset

            source = DreamDBDataset(self.dataset(), fields=FIELDS, batch_size=self.batch_size)
        elif kind.startswith("parquet_"):
            source = make_parquet_dataset(f"{self.work}/data-{kind[len('parquet_'):]}.parquet", self.batch_size)
        elif kind == "lance":
            from lance.torch.data import LanceDataset

            source = LanceDataset(
                f"{self.work}/data.lance", batch_size=self.batch_size, columns=FIELDS, to_tensor_fn=to_numpy
            )
        else:
            raise ValueError(f"no reader {name}")
        n = int(workers)
        # Lance says it is not fork-safe and asks for spawn or forkserver; the others fork.
        context = "spawn" if kind == "lance" and n > 0 else None
        loader = DataLoader(
            source, batch_size=None, num_workers=n, persistent_workers=n > 0, multiprocessing_context=context
        )
        self.loaders[name] = loader
        return loader

    def run(self, name: str) -> dict[str, Any]:
        before = cpu_seconds()
        result = self._run(name)
        after = cpu_seconds()
        # A process that ended during the pass is missing from `after`: count what it had as 0.
        by_role = {role: max(0.0, after[role] - before[role]) for role in after}
        return {**result, "cpuSeconds": sum(by_role.values()), "cpuByRole": by_role}

    def _run(self, name: str) -> dict[str, Any]:
        rows = 0
        total = 0.0
        if name == "python_iter":
            start = time.perf_counter()
            for batch in self.dataset().iter_arrow_batches(batch_size=self.batch_size, fields=FIELDS):
                n = batch.num_rows
                embedding = batch.column("embedding").values.to_numpy(zero_copy_only=False).reshape(n, -1)
                total += float(embedding[-1, -1])  # touch the data
                rows += n
            return {"rows": rows, "seconds": time.perf_counter() - start}
        loader = self.loader(name)
        start = time.perf_counter()
        for batch in loader:
            embedding = batch["embedding"]
            if len(embedding):
                total += float(embedding[-1, -1])
            rows += len(embedding)
        return {"rows": rows, "seconds": time.perf_counter() - start}


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> dict[str, float]:
    """CPU time (user + system, every thread) of this process, its DataLoader workers and
    the bridges, each with its children already reaped: a pass's cost that hardly depends on
    how busy the shared machine is."""
    total = {"main": 0.0, "workers": 0.0, "bridges": 0.0}
    todo = [os.getpid()]
    while todo:
        pid = todo.pop()
        todo.extend(_children(pid))
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read()
        except OSError:
            continue
        role = "main" if pid == os.getpid() else "bridges" if b"bridge.mjs" in argv else "workers"
        # utime, stime, cutime, cstime: fields 14-17 of stat, 12-15 after the command name
        total[role] += sum(int(v) for v in fields[11:15]) / _TICK
    return total


def cold_starts(n: int) -> dict[str, Any]:
    """Time from the first call to the hello answer, with no bridge running, n times."""
    from dreamdb_dataset import _bridge

    total, find_node = [], []
    for _ in range(n):
        _bridge.shutdown()
        start = time.perf_counter()
        _bridge.find_node()
        find_node.append(time.perf_counter() - start)
        start = time.perf_counter()
        _bridge.bridge()  # spawns node, then the "hello" request and its answer
        total.append(time.perf_counter() - start)
    return {"seconds": total, "findNodeSeconds": find_node}


def serve(work: str, backend: str, batch_size: int) -> None:
    readers = Readers(work, backend, batch_size)
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but answers on the protocol's stdout
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if "reader" in request:
                answer = readers.run(request["reader"])
            else:
                answer = cold_starts(int(request["coldstarts"]))
        except Exception as error:  # noqa: BLE001 - reported to the caller
            answer = {"error": f"{type(error).__name__}: {error}"}
        out.write(json.dumps(answer) + "\n")
        out.flush()


# -- peak memory ----------------------------------------------------------------------------


def _status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS", "PPid"):
                out[key] = int(value.split()[0])
    return out


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return found


class PeakSampler:
    """Samples VmHWM (peak RSS, kB) of this process and all its descendants every 20 ms."""

    def __init__(self) -> None:
        self.seen: dict[int, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def sample(self) -> None:
        todo = [os.getpid()]
        while todo:
            pid = todo.pop()
            todo.extend(_children(pid))
            try:
                status = _status(pid)
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            entry = self.seen.setdefault(pid, {"pid": pid, "ppid": status["PPid"], "hwmKiB": 0})
            entry["program"] = os.path.basename(argv[0].decode(errors="replace"))
            entry["bridge"] = any(a.endswith(b"bridge.mjs") for a in argv)
            entry["helper"] = any(b"resource_tracker" in a or b"forkserver" in a for a in argv)
            entry["hwmKiB"] = max(entry["hwmKiB"], status.get("VmHWM", 0))

    def _loop(self) -> None:
        while not self._stop.wait(0.02):
            self.sample()

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.sample()
        self._stop.set()
        self._thread.join()


def rss(reader: str, work: str, backend: str, batch_size: int) -> None:
    me = os.getpid()
    readers = Readers(work, backend, batch_size)
    if reader != "python_iter":
        readers.loader(reader)
    before = _status(me)["VmRSS"]
    with PeakSampler() as sampler:
        result = readers.run(reader)
    processes = []
    for entry in sampler.seen.values():
        if entry["pid"] == me:
            role = "main"
        elif entry["bridge"]:
            role = "bridge of main" if entry["ppid"] == me else "bridge of a worker"
        elif entry["program"].startswith("python") and not entry["helper"]:
            role = "worker"
        else:
            continue  # `node --version` while finding node, spawn's resource tracker, ...
        processes.append({**entry, "role": role})
    print(json.dumps({"reader": reader, "rows": result["rows"], "mainRssBeforeKiB": before, "processes": processes}))


if __name__ == "__main__":
    command = sys.argv[1]
    if command == "prepare":
        prepare(sys.argv[2], sys.argv[3])
    elif command == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif command == "rss":
        rss(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        raise SystemExit(__doc__)
