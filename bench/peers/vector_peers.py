"""The Python peers of `pnpm bench vector`: FAISS and LanceDB on the vectors DreamDB searches.

Usage:
  vector_peers.py truth <base.npy> <queries.npy> <metric> <k> <out.npy>
      exact top-k ids (brute force in float64) of each query: int32, queries x k.
  vector_peers.py serve <config.json>
      builds every peer index, prints one JSON line with the builds, then answers JSON
      commands on stdin, one per line, each with one JSON line on stdout:
        {"cmd": "pass", "step": i, "warm": 0, "mode": "query", "minSeconds": 0.3, "maxCalls": 50}  every peer setting at step i
            of its sweep (the i-th nprobe) over every query, timed: recall@10 and latencies;
            "mode": "query" asks one query per call (per-query latencies), "batch" all
            queries in one call (FAISS only), the call repeated until "minSeconds" have
            passed or "maxCalls" calls (one latency per call; "seconds" the time per call);
            "warm": n runs only the first n queries (a warm-up)
        {"cmd": "quit"}

Config: {"base", "queries", "truth" (.npy paths), "metric" ("l2" | "cosine"), "lists",
"nprobes", "k", "qbs" (query bits of IndexIVFRaBitQ 1 bit, each a setting), "refines" (k_factors
of IndexRefineFlat over the 1-bit indexes, each a setting), "fastscan": bool, "refine"
(LanceDB's refine_factor), "workdir", "lance": bool, "lanceQueries": how many of the queries
LanceDB answers (its Python query builder costs milliseconds per query)}. One index is built
per codec and searched in every setting: qb and k_factor are search-time parameters. Vectors under cosine arrive unit
length, so FAISS runs inner product on them. Every FAISS index shares one coarse quantizer
(k-means: 20 iterations, at most 256 training points per list, DreamDB's training settings)
with `lists` lists; each build time is that k-means plus the index's own training and adding.
FAISS runs one thread (faiss.omp_set_num_threads(1)); LanceDB is asked for one
(LANCE_CPU_THREADS=1) and the measured CPU time over wall time tells how many it used.
"""

import json
import os
import shutil
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("LANCE_CPU_THREADS", "1")

import numpy as np  # noqa: E402


def truth(base_path, queries_path, metric, k, out_path):
    base = np.load(base_path).astype(np.float64)
    queries = np.load(queries_path).astype(np.float64)
    out = np.zeros((len(queries), k), dtype=np.int32)
    norms = (base * base).sum(1)
    for start in range(0, len(queries), 100):
        q = queries[start : start + 100]
        if metric == "l2":
            d = norms[None, :] - 2 * q @ base.T  # + |q|^2, the same for every row
        else:
            d = -(q @ base.T)  # unit vectors: 1 - cos orders like -dot
        part = np.argpartition(d, k, axis=1)[:, :k]
        rows = np.arange(len(q))[:, None]
        order = np.argsort(d[rows, part], axis=1, kind="stable")
        out[start : start + 100] = part[rows, order]
    np.save(out_path, out)


class Peer:
    def __init__(self, name, family, params, prepare, search, bytes_per_vector, build_seconds, build_cpu_seconds, queries=None, batch=True):
        self.name = name
        self.family = family
        self.params = params  # list of (label, value) sweep points
        self.prepare = prepare  # value -> None: sets the sweep point (nprobe, qb, k_factor) on the shared index
        self.search = search  # queries (rows) -> ids (rows)
        self.bytes_per_vector = bytes_per_vector
        self.build_seconds = build_seconds
        self.build_cpu_seconds = build_cpu_seconds
        self.queries = queries  # at most this many queries (None: all)
        self.batch = batch  # answers every query in one call as well


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def faiss_peers(config, base, metric):
    import faiss

    faiss.omp_set_num_threads(1)
    dim, lists, k = base.shape[1], config["lists"], config["k"]
    faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT

    def train_kmeans():
        kmeans = faiss.Kmeans(
            dim, lists, niter=20, seed=1, spherical=metric != "l2", max_points_per_centroid=256, verbose=False
        )
        kmeans.train(base)
        return kmeans.centroids

    centroids, kmeans_seconds, kmeans_cpu = timed(train_kmeans)

    # FAISS's RaBitQ does not rotate: its own recipe puts a random rotation in front
    # (index_factory "RR{d},IVF{lists},RaBitQ"). Without it, 1-bit recall@10 on Fashion-MNIST
    # stays under 0.5 at any nprobe. Rotated data gets rotated centroids (the same lists).
    rotation = faiss.RandomRotationMatrix(dim, dim)
    rotation.init(1)
    rotated_centroids = rotation.apply(centroids)

    def quantizer(rotated):
        q = faiss.IndexFlatL2(dim) if metric == "l2" else faiss.IndexFlatIP(dim)
        q.add(rotated_centroids if rotated else centroids)
        return q

    peers, keep = [], []
    refines = config.get("refines", [])
    # (name, codec, bits, settings): one index per codec, every setting (qb, k_factor) searches it.
    codecs = [("IndexIVFFlat", "flat", None, [(None, 0)])]
    codecs.append(("IndexIVFRaBitQ 1 bit", "rabitq", 1, [(qb, f) for qb in config["qbs"] for f in [0, *refines]]))
    if config.get("fastscan"):
        codecs.append(("IndexIVFRaBitQFastScan 1 bit", "fastscan", 1, [(None, f) for f in [0, *refines]]))
    codecs += [("IndexIVFRaBitQ 4 bits", "rabitq", 4, [(8, 0)]), ("IndexIVFRaBitQ 8 bits", "rabitq", 8, [(8, 0)])]
    for name, codec, bits, settings in codecs:
        q = quantizer(codec != "flat")
        refined = any(f > 0 for _, f in settings)

        def build(q=q, codec=codec, bits=bits, refined=refined):
            if codec == "flat":
                index = faiss.IndexIVFFlat(q, dim, lists, faiss_metric)
                outer = index
            else:
                if codec == "fastscan":
                    index = faiss.IndexIVFRaBitQFastScan(q, dim, lists, faiss_metric, 32, True, bits)
                else:
                    index = faiss.IndexIVFRaBitQ(q, dim, lists, faiss_metric, True, bits)
                outer = faiss.IndexPreTransform(rotation, index)
            outer.train(base)  # the quantizer is trained: only the codec trains here
            refine = faiss.IndexRefineFlat(outer) if refined else None
            (refine or outer).add(base)
            return index, outer, refine

        (ivf, outer, refine), seconds, cpu = timed(build)
        keep.append(q)  # the quantizer must outlive its index
        for qb, factor in settings:

            def prepare(nprobe, ivf=ivf, refine=refine, qb=qb, factor=factor):
                ivf.nprobe = nprobe
                if qb is not None:
                    ivf.qb = qb
                if factor:
                    refine.k_factor = factor

            def search(queries, outer=outer, refine=refine, factor=factor):
                return (refine if factor else outer).search(queries, k)[1]

            label = "IndexIVFFlat" if bits is None else f"RR + {name}"
            if qb is not None and bits == 1:
                label += f", qb {qb}"
            if factor:
                label += f" + IndexRefineFlat (k_factor {factor})"
            peer = Peer(
                f"FAISS {label}",
                "faiss-ivf-flat" if bits is None else "faiss-ivf-rabitq",
                [(f"nprobe {p}", p) for p in config["nprobes"]],
                prepare,
                search,
                ivf.code_size + (4 * dim if factor else 0),
                kmeans_seconds + seconds,
                kmeans_cpu + cpu,
            )
            peer.bits = bits
            peer.rerank = bool(factor)
            peers.append(peer)
    return peers, {"faiss": faiss.__version__, "faiss compile options": faiss.get_compile_options().strip()}


def lance_peers(config, base, metric):
    import lancedb
    import pyarrow as pa
    from lancedb.index import IvfRq

    dim = base.shape[1]
    root = os.path.join(config["workdir"], "lancedb")
    shutil.rmtree(root, ignore_errors=True)
    db = lancedb.connect(root)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(base.reshape(-1), type=pa.float32()), dim)
    table = db.create_table("vectors", data=pa.table({"vector": vectors}), mode="overwrite")
    distance = "l2" if metric == "l2" else "cosine"
    _, seconds, cpu = timed(
        lambda: table.create_index(
            "vector", config=IvfRq(distance_type=distance, num_partitions=config["lists"], num_bits=1)
        )
    )
    index_bytes = 0
    for folder, _, files in os.walk(os.path.join(root, "vectors.lance", "_indices")):
        index_bytes += sum(os.path.getsize(os.path.join(folder, f)) for f in files)
    k = config["k"]
    peers = []
    for refine in [None] + ([config["refine"]] if config.get("refine") else []):
        probe = [1]

        def prepare(nprobe, probe=probe):
            probe[0] = nprobe

        def search(queries, refine=refine, probe=probe):
            builder = table.search(queries[0], vector_column_name="vector").distance_type(distance)
            builder = builder.nprobes(probe[0]).limit(k).select([]).with_row_id(True)
            if refine:
                builder = builder.refine_factor(refine)
            return [builder.to_arrow()["_rowid"].to_numpy()]

        name = "LanceDB IVF_RQ 1 bit" + (f" + refine_factor {refine}" if refine else "")
        peers.append(
            Peer(
                name,
                "lancedb-ivf-rq",
                [(f"nprobe {p}", p) for p in config["nprobes"]],
                prepare,
                search,
                index_bytes / len(base) + (4 * dim if refine else 0),
                seconds,
                cpu,
                config.get("lanceQueries"),
                batch=False,
            )
        )
        peers[-1].bits = 1
        peers[-1].rerank = bool(refine)
    return peers, {"lancedb": lancedb.__version__}


def run_pass(peers, queries, truth10, k, step, warm, mode, min_seconds=0.0, max_calls=1):
    results = []
    for peer in peers:
        if mode == "batch" and not peer.batch:
            continue
        count = min(len(queries), peer.queries or len(queries), warm or len(queries))
        for label, value in peer.params[step : step + 1]:
            peer.prepare(value)
            cpu = time.process_time()
            wall = time.perf_counter()
            if mode == "batch":
                # Repeated for min_seconds (max_calls at most), as DreamDB's searchMany is: one
                # call of tens of milliseconds alone is decided by one preemption. "seconds" is
                # then the time per call (total over calls).
                calls = []
                while True:
                    start = time.perf_counter()
                    ids = peer.search(queries[:count])
                    calls.append(time.perf_counter() - start)
                    if len(calls) >= max_calls or sum(calls) >= min_seconds:
                        break
                latencies = np.array(calls)
            else:
                latencies = np.zeros(count)
                ids = []
                for i in range(count):
                    start = time.perf_counter()
                    ids.append(peer.search(queries[i : i + 1])[0])
                    latencies[i] = time.perf_counter() - start
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
            hits = sum(len(truth10[i].intersection(int(x) for x in ids[i][:k])) for i in range(count))
            results.append(
                {
                    "peer": peer.name,
                    "setting": label,
                    "nprobe": value,
                    "queries": count,
                    "recall": hits / (count * k),
                    "seconds": float(latencies.mean() if mode == "batch" else latencies.sum()),
                    "cpuOverWall": cpu / wall,
                    "latencyMicros": [round(x * 1e6) for x in latencies.tolist()],
                }
            )
    return results


def serve(config_path):
    with open(config_path) as f:
        config = json.load(f)
    base = np.ascontiguousarray(np.load(config["base"]), dtype=np.float32)
    queries = np.ascontiguousarray(np.load(config["queries"]), dtype=np.float32)
    truth10 = [set(row[:10].tolist()) for row in np.load(config["truth"])]
    metric, k = config["metric"], config["k"]
    peers, versions = faiss_peers(config, base, metric)
    builds_failed = {}
    if config.get("lance"):
        try:
            lance, lance_versions = lance_peers(config, base, metric)
            peers += lance
            versions.update(lance_versions)
        except Exception as error:  # report it, run the others
            builds_failed["LanceDB IVF_RQ"] = f"{type(error).__name__}: {error}"
    print(
        json.dumps(
            {
                "versions": versions,
                "failed": builds_failed,
                "peers": [
                    {
                        "peer": p.name,
                        "family": p.family,
                        "bits": getattr(p, "bits", None),
                        "rerank": getattr(p, "rerank", False),
                        "buildSeconds": p.build_seconds,
                        "buildCpuSeconds": p.build_cpu_seconds,
                        "bytesPerVector": p.bytes_per_vector,
                    }
                    for p in peers
                ],
            }
        ),
        flush=True,
    )
    for line in sys.stdin:
        command = json.loads(line)
        if command["cmd"] == "quit":
            break
        if command["cmd"] == "pass":
            results = run_pass(
                peers, queries, truth10, k, command["step"],
                command.get("warm", 0),
                command.get("mode", "query"),
                command.get("minSeconds", 0.0),
                command.get("maxCalls", 1),
            )
            print(json.dumps({"results": results}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "truth":
        truth(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
    elif sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        raise SystemExit(__doc__)
