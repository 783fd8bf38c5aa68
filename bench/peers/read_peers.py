"""Time reading the same records from Parquet (pyarrow) and Lance (pylance).

Usage: read_peers.py <arrow-ipc-stream> <work dir> <rounds> <columns,comma,separated>
Writes both formats from the Arrow IPC stream DreamDB exported (once: a later call with the
same work dir reuses them), then reads them back `rounds` times (all batches, the given columns, touching every buffer) and prints JSON.
"""
import json
import os
import sys
import time

import lance
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

source, work, rounds, columns = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].split(",")
if not os.path.exists(f"{work}/data.lance"):  # written once, read in every call
    with pa.memory_map(source) as f:
        table = ipc.open_stream(f).read_all()
    pq.write_table(table, f"{work}/data.parquet", row_group_size=16384)
    lance.write_dataset(table, f"{work}/data.lance", mode="overwrite")


def consume(batches):
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        for column in batch.columns:
            for buffer in column.buffers():
                if buffer is not None:
                    memoryview(buffer)[-1:]  # touch the data
    return rows


def timed(read):
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        rows = read()
        samples.append(time.perf_counter() - start)
    return {"rows": rows, "seconds": sorted(samples)[len(samples) // 2], "samples": samples}


parquet = timed(lambda: consume(pq.ParquetFile(f"{work}/data.parquet").iter_batches(batch_size=4096, columns=columns)))
dataset = lance.dataset(f"{work}/data.lance")
lance_result = timed(lambda: consume(dataset.to_batches(columns=columns, batch_size=4096)))
print(json.dumps({"pyarrow": pa.__version__, "pylance": lance.__version__, "parquet": parquet, "lance": lance_result}))
