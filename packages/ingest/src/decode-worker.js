// The decode thread of ingest (decode-threads.ts): the one place a process reads parquet, so
// parquet-wasm is compiled once per process. `footer` answers a shard's row counts and its
// schema (as an Arrow IPC stream); `rows` reads rows of some columns and sends them back as
// an Arrow IPC stream (`whole`: from the file read whole, when it is small enough). Buffers
// are transferred, not copied.
// An ordinary module file, so that it runs as is under a test runner (src/) and built (dist/).
import { openAsBlob } from 'node:fs'
import { readFile, stat } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { parentPort } from 'node:worker_threads'

/**
 * parquet-wasm's Node build is CommonJS: required, it loads in about half the CPU of an
 * `import()`, which translates its 100 kB of glue from CommonJS to ES module first (34
 * against 65 ms a process, measured by H-cli, issue #13).
 */
const loadParquet = () => createRequire(import.meta.url)('parquet-wasm')

/**
 * Files up to this size are read whole for `wholeFile` requests: parquet-wasm's
 * `readParquet` over the bytes in memory costs about half the CPU of its async reader over
 * a Blob (which fetches each column chunk through a stream), and returns one record batch,
 * so a column's values come back contiguous (measured on 19 MB shards of 20-50 kB images:
 * 0.26 s against 0.44 s for 12 shards). Larger files keep the async reader, which reads only
 * the row groups asked for.
 */
const WHOLE_FILE_BYTES = 128 * 1024 * 1024
/** The last file read whole (its next chunk is read from it), dropped when idle. */
let cached
let dropTimer
const KEEP_MS = 2000

async function wholeFile(path) {
  const info = await stat(path)
  if (info.size > WHOLE_FILE_BYTES) return undefined
  // A changed file (size, mtime or inode) is read again.
  const key = `${info.size}:${info.mtimeMs}:${info.ino}`
  if (cached?.path !== path || cached.key !== key) {
    cached = undefined
    cached = { path, key, bytes: await readFile(path) }
  }
  return cached.bytes
}

let parquet
/**
 * Send rows' IPC stream: transferred (no copy), or, when the caller sent a shared buffer
 * (`into`, possibly null), copied into it, or into a new one when it does not fit (with
 * room to spare, so that the next chunks fit in it): see TransferBuffers in decode-threads.ts.
 */
function sendRows(id, ipc, into) {
  if (into === undefined) {
    parentPort.postMessage({ id, ipc }, [ipc.buffer])
    return
  }
  const size = ipc.byteLength
  const shared =
    into !== null && into.byteLength >= size
      ? into
      : new SharedArrayBuffer(Math.ceil((size * 1.125) / (1 << 20)) * (1 << 20))
  new Uint8Array(shared, 0, size).set(ipc)
  parentPort.postMessage({ id, shared, size })
}

parentPort.on('message', async ({ id, kind, path, rowGroups, offset, limit, columns, whole, into }) => {
  let file
  clearTimeout(dropTimer)
  try {
    parquet ??= loadParquet()
    const pw = parquet
    const bytes = kind === 'rows' && whole === true ? await wholeFile(path) : undefined
    if (bytes !== undefined) {
      const table = pw.readParquet(bytes, { rowGroups, offset, limit, columns })
      sendRows(id, table.intoIPCStream(), into)
      return
    }
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
    sendRows(id, table.intoIPCStream(), into)
  } catch (error) {
    parentPort.postMessage({ id, error: error instanceof Error ? error.message : String(error) })
  } finally {
    file?.free()
    dropTimer = setTimeout(() => {
      cached = undefined
    }, KEEP_MS)
    dropTimer.unref()
  }
})
