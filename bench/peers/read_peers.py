"""Time reading the same records from Parquet (pyarrow) and Lance (pylance).

Usage: read_peers.py <arrow-ipc-stream> <work dir> <rounds> <columns,comma,separated> [s3 bucket]
Writes both formats from the Arrow IPC stream DreamDB exported (once: a later call with the
same work dir reuses them; Parquet twice, snappy as pyarrow's default and uncompressed, since
snappy buys nothing on random floats), then reads them back `rounds` times (all batches, the given columns, touching every buffer) and prints JSON:
wall seconds and CPU seconds of this process (all its threads) per read.
With an S3 bucket (the server and credentials from DREAMDB_TEST_S3_ENDPOINT and AWS_*), both
are copied there once and read back from there instead, through pyarrow's S3FileSystem and
Lance's object store.
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
    pq.write_table(table, f"{work}/data-uncompressed.parquet", row_group_size=16384, compression=None)
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
    cpu = []
    for _ in range(rounds):
        start, start_cpu = time.perf_counter(), time.process_time()
        rows = read()
        samples.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)  # every thread of this process
    return {"rows": rows, "seconds": sorted(samples)[len(samples) // 2], "samples": samples, "cpu": cpu}


dataset = lance.dataset(f"{work}/data.lance")
result = {"pyarrow": pa.__version__, "pylance": lance.__version__}
if len(sys.argv) <= 5:
    result["parquet"] = timed(
        lambda: consume(pq.ParquetFile(f"{work}/data.parquet").iter_batches(batch_size=4096, columns=columns))
    )
    result["parquet_uncompressed"] = timed(
        lambda: consume(
            pq.ParquetFile(f"{work}/data-uncompressed.parquet").iter_batches(batch_size=4096, columns=columns)
        )
    )
    result["lance"] = timed(lambda: consume(dataset.to_batches(columns=columns, batch_size=4096)))
else:
    import pyarrow.fs as pafs
    from urllib.parse import urlparse

    bucket = sys.argv[5]
    endpoint = os.environ["DREAMDB_TEST_S3_ENDPOINT"]
    key, secret = os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    region = os.environ.get("AWS_REGION", "us-east-1")
    url = urlparse(endpoint)
    s3 = pafs.S3FileSystem(
        access_key=key, secret_key=secret, region=region, endpoint_override=url.netloc, scheme=url.scheme
    )
    options = {
        "endpoint": endpoint,
        "aws_access_key_id": key,
        "aws_secret_access_key": secret,
        "region": region,
        "allow_http": "true",
    }
    if s3.get_file_info(f"{bucket}/data.parquet").type == pafs.FileType.NotFound:
        pafs.copy_files(f"{work}/data.parquet", f"{bucket}/data.parquet", destination_filesystem=s3)
        lance.write_dataset(dataset.to_table(), f"s3://{bucket}/data.lance", storage_options=options)
    result["parquet_s3"] = timed(
        lambda: consume(
            pq.ParquetFile(s3.open_input_file(f"{bucket}/data.parquet")).iter_batches(
                batch_size=4096, columns=columns
            )
        )
    )
    remote = lance.dataset(f"s3://{bucket}/data.lance", storage_options=options)
    result["lance_s3"] = timed(lambda: consume(remote.to_batches(columns=columns, batch_size=4096)))

print(json.dumps(result))
