// The decode thread of ingest (decode-threads.ts): the one place a process reads parquet, so
// parquet-wasm is compiled once per process. `footer` answers a shard's row counts and its
// schema (as an Arrow IPC stream); `rows` reads rows of some columns and sends them back as
// an Arrow IPC stream (`whole`: from the file read whole, when it is small enough), or, into
// a shared buffer the caller lends, as the arrays' buffers (`sendRowsFfi`). Buffers are
// transferred or shared, not copied again.
// An ordinary module file, so that it runs as is under a test runner (src/) and built (dist/).
import { createHash } from 'node:crypto'
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

/**
 * Rows as Arrow C Data Interface structs in parquet-wasm's memory (`Table.intoFFI`), copied
 * buffer by buffer straight into the caller's shared buffer: one copy of the rows, where the
 * IPC path writes a stream inside the WebAssembly memory (a copy, and ~35 MB more of it to
 * grow and fault in per process) and then copies that out. The main thread rebuilds the
 * Arrow table from the buffers and the schema (decode-threads.ts, `tableOfLayout`). Returns
 * undefined, having copied nothing, for a type this does not know (the IPC path then runs).
 */
function sendRowsFfi(pw, id, table, into, hash) {
  const schema = table.schema.intoIPCStream()
  const stream = table.intoFFI()
  try {
    // Every address first: a call into the module may grow its memory, which detaches the
    // buffer read below.
    const schemaAddress = stream.schemaAddr()
    const arrays = Array.from({ length: stream.numArrays() }, (_, b) => stream.arrayAddr(b))
    const memory = pw.wasmMemory().buffer
    const view = new DataView(memory)
    const u8 = new Uint8Array(memory)
    const u32 = (at) => view.getUint32(at, true)
    const i64 = (at) => Number(view.getBigInt64(at, true))
    const cString = (at) => {
      let end = at
      while (u8[end] !== 0) end++
      return Buffer.from(memory, at, end - at).toString('latin1')
    }
    // First pass: every buffer to copy (wasm address, bytes), in order; the layout refers to
    // them by index. A struct ArrowSchema: format 0, children 32 (n 24), dictionary 36;
    // ArrowArray: length 0, null_count 8, offset 16, n_buffers 24, n_children 32, buffers 40,
    // children 44, dictionary 48 (wasm32: pointers are 4 bytes, int64s 8-aligned).
    const copies = []
    const buffer = (address, bytes) => {
      if (address === 0 || bytes === 0) return -1
      copies.push([address, bytes])
      return copies.length - 1
    }
    // Each node's field name and format, for `hash` (not sent: the schema names them).
    const named = new WeakMap()
    const WIDTH = { c: 1, C: 1, s: 2, S: 2, i: 4, I: 4, l: 8, L: 8, e: 2, f: 4, g: 8, tdD: 4, tdm: 8 }
    const walk = (schemaAt, arrayAt) => {
      const format = cString(u32(schemaAt))
      const length = i64(arrayAt)
      const offset = i64(arrayAt + 16)
      const end = offset + length
      const buffers = u32(arrayAt + 40)
      const ptr = (k) => u32(buffers + 4 * k)
      const node = { length, nullCount: i64(arrayAt + 8), offset, buffers: [], children: [] }
      named.set(node, { name: cString(u32(schemaAt + 4)), format })
      const validity = () => buffer(ptr(0), Math.ceil(end / 8))
      const child = (k, childSchema) => walk(childSchema, u32(u32(arrayAt + 44) + 4 * k))
      const dictionarySchema = u32(schemaAt + 36)
      if (dictionarySchema !== 0) {
        const width = WIDTH[format]
        if (width === undefined || format.length !== 1) return undefined
        node.buffers = [validity(), buffer(ptr(1), end * width)]
        node.dictionary = walk(dictionarySchema, u32(arrayAt + 48))
        return node.dictionary === undefined ? undefined : node
      }
      const width = WIDTH[format] ?? (/^ts[smun]:/.test(format) ? 8 : undefined)
      if (width !== undefined) node.buffers = [validity(), buffer(ptr(1), end * width)]
      else if (format === 'b') node.buffers = [validity(), buffer(ptr(1), Math.ceil(end / 8))]
      else if (format === 'z' || format === 'u')
        node.buffers = [
          validity(),
          buffer(ptr(1), (end + 1) * 4),
          // The values' length is the last offset (none without rows or offsets).
          buffer(ptr(2), end === 0 || ptr(1) === 0 ? 0 : view.getInt32(ptr(1) + end * 4, true)),
        ]
      else if (format === 'Z' || format === 'U')
        node.buffers = [
          validity(),
          buffer(ptr(1), (end + 1) * 8),
          buffer(ptr(2), end === 0 || ptr(1) === 0 ? 0 : i64(ptr(1) + end * 8)),
        ]
      else if (format === '+l' || format === '+L' || format.startsWith('+w:') || format === '+s') {
        if (format === '+l') node.buffers = [validity(), buffer(ptr(1), (end + 1) * 4)]
        else if (format === '+L') node.buffers = [validity(), buffer(ptr(1), (end + 1) * 8)]
        else node.buffers = [validity()]
        const n = i64(schemaAt + 24)
        for (let k = 0; k < n; k++) {
          const c = child(k, u32(u32(schemaAt + 32) + 4 * k))
          if (c === undefined) return undefined
          node.children.push(c)
        }
      } else return undefined
      return node
    }
    const batches = []
    for (const arrayAddress of arrays) {
      const node = walk(schemaAddress, arrayAddress)
      if (node === undefined) return undefined
      batches.push(node)
    }
    // Second pass: the copies, each 8-byte aligned (offsets and values are read as typed arrays).
    const at = []
    let size = 0
    for (const [, bytes] of copies) {
      at.push(size)
      size += Math.ceil(bytes / 8) * 8
    }
    const shared =
      into !== null && into.byteLength >= size
        ? into
        : new SharedArrayBuffer(Math.max(8, Math.ceil((size * 1.125) / (1 << 20)) * (1 << 20)))
    const out = new Uint8Array(shared)
    for (const [k, [address, bytes]] of copies.entries())
      out.set(u8.subarray(address, address + bytes), at[k])
    const place = (node) => {
      node.buffers = node.buffers.map((k) => (k < 0 ? null : [at[k], copies[k][1]]))
      for (const child of node.children) place(child)
      if (node.dictionary !== undefined) place(node.dictionary)
    }
    for (const batch of batches) place(batch)
    const digests = hash === undefined ? undefined : hashValues(out, batches, named, hash)
    const transfer = digests === undefined ? [] : [digests.sha256.buffer, digests.lengths.buffer]
    parentPort.postMessage({ id, shared, size, layout: { schema, batches }, digests }, [
      schema.buffer,
      ...transfer,
    ])
    return true
  } finally {
    stream.free()
  }
}

/**
 * The sha2-256 of every value of the binary column at `path` (field names from the top, e.g.
 * `['image', 'bytes']`), hashed here from the bytes just copied into the shared buffer, and
 * each value's length (the main thread checks them against the values it reads, and hashes
 * them itself on any mismatch): the dataset's binary index needs each image's digest, and the
 * main thread then does not hash every image (issue #13). Undefined when the column is not
 * found, or not binary. Rows of every batch, in order; a struct's offset applies to its
 * children (Arrow C Data Interface), so a value's index is the sum of the offsets on the path.
 */
function hashValues(out, batches, named, path) {
  const nodes = []
  for (const batch of batches) {
    let node = batch
    let offset = batch.offset
    for (const name of path) {
      node = node.children.find((child) => named.get(child)?.name === name)
      if (node === undefined) return undefined
      offset += node.offset
    }
    const format = named.get(node).format
    if (format !== 'z' && format !== 'Z') return undefined
    nodes.push({ node, offset, rows: batch.length, large: format === 'Z' })
  }
  const rows = nodes.reduce((n, b) => n + b.rows, 0)
  const sha256 = new Uint8Array(rows * 32)
  const lengths = new Uint32Array(rows)
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength)
  let row = 0
  for (const { node, offset, rows: count, large } of nodes) {
    const [, offsets, values] = node.buffers
    const width = large ? 8 : 4
    const at = (k) =>
      offsets === null
        ? 0
        : large
          ? Number(view.getBigInt64(offsets[0] + k * width, true))
          : view.getInt32(offsets[0] + k * width, true)
    for (let i = 0; i < count; i++, row++) {
      const start = at(offset + i)
      const end = at(offset + i + 1)
      lengths[row] = end - start
      // No values buffer: every value is empty.
      const bytes = values === null ? out.subarray(0, 0) : out.subarray(values[0] + start, values[0] + end)
      sha256.set(createHash('sha256').update(bytes).digest(), row * 32)
    }
  }
  return { sha256, lengths }
}

parentPort.on('message', async ({ id, kind, path, rowGroups, offset, limit, columns, whole, into, hash }) => {
  let file
  clearTimeout(dropTimer)
  try {
    parquet ??= loadParquet()
    const pw = parquet
    const bytes = kind === 'rows' && whole === true ? await wholeFile(path) : undefined
    if (bytes !== undefined) {
      if (into !== undefined) {
        const table = pw.readParquet(bytes, { rowGroups, offset, limit, columns })
        if (sendRowsFfi(pw, id, table, into, hash)) return
      }
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
