// The decode thread of ingest (decode-threads.ts): the one place a process reads parquet, so
// parquet-wasm is compiled once per process. `footer` answers a shard's row counts and its
// schema (as an Arrow IPC stream); `rows` reads rows of some columns and sends them back as
// an Arrow IPC stream. Buffers are transferred, not copied.
// An ordinary module file, so that it runs as is under a test runner (src/) and built (dist/).
import { openAsBlob } from 'node:fs'
import { parentPort } from 'node:worker_threads'

let parquet
parentPort.on('message', async ({ id, kind, path, rowGroups, offset, limit, columns }) => {
  let file
  try {
    parquet ??= import('parquet-wasm')
    const pw = await parquet
    file = await pw.ParquetFile.fromFile(await openAsBlob(path))
    if (kind === 'footer') {
      const metadata = file.metadata()
      const rows = metadata.fileMetadata().numRows()
      const groups = metadata.rowGroups().map((g) => g.numRows())
      const ipc = file.schema().intoIPCStream()
      parentPort.postMessage({ id, footer: { rows, rowGroups: groups }, ipc }, [ipc.buffer])
      return
    }
    const table = await file.read({ rowGroups, offset, limit, columns })
    const ipc = table.intoIPCStream()
    parentPort.postMessage({ id, ipc }, [ipc.buffer])
  } catch (error) {
    parentPort.postMessage({ id, error: error instanceof Error ? error.message : String(error) })
  } finally {
    file?.free()
  }
})
