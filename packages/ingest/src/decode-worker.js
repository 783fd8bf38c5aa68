// The decode thread of ingest (decode-threads.ts): reads rows of a parquet shard with
// parquet-wasm and sends them back as an Arrow IPC stream, its buffer transferred (no copy).
// An ordinary module file, so that it runs as is under a test runner (src/) and built (dist/).
import { openAsBlob } from 'node:fs'
import { parentPort } from 'node:worker_threads'

let parquet
parentPort.on('message', async ({ id, path, rowGroups, offset, limit, columns }) => {
  let file
  try {
    parquet ??= import('parquet-wasm')
    const pw = await parquet
    file = await pw.ParquetFile.fromFile(await openAsBlob(path))
    const table = await file.read({ rowGroups, offset, limit, columns })
    const ipc = table.intoIPCStream()
    parentPort.postMessage({ id, ipc }, [ipc.buffer])
  } catch (error) {
    parentPort.postMessage({ id, error: error instanceof Error ? error.message : String(error) })
  } finally {
    file?.free()
  }
})
