/**
 * Parquet rows decoded on a thread of their own, so that reading the next chunk (parquet-wasm:
 * decompress, decode, re-encode as Arrow IPC) runs beside the main thread's encoding,
 * hashing and writing of the one before (issue #13). The rows come back as an IPC stream
 * whose buffer is transferred, not copied. Footers are read there too: ingest's main thread
 * never loads parquet-wasm, so a process compiles its 5 MB of WebAssembly once.
 *
 * The worker is an ordinary module file, decode-worker.js, beside this one: in src/ under a
 * test runner, in dist/ when built (tsup builds it as a second entry). One thread per
 * process, started on first use; it never keeps the process alive when idle.
 *
 * @internal
 */
import { Worker } from 'node:worker_threads'
import {
  type Data,
  DataType,
  makeData,
  makeVector,
  RecordBatch,
  Struct,
  Table,
  tableFromIPC,
} from 'apache-arrow'

const WORKER_URL = new URL(
  `./decode-worker.${import.meta.url.endsWith('.mjs') ? 'mjs' : 'js'}`,
  import.meta.url,
)

export interface DecodeRequest {
  path: string
  rowGroups: number[]
  offset: number
  limit: number
  columns: string[]
  /**
   * Read the file whole when it is small enough (decode-worker.js): for reads of most of a
   * file's bytes (a chunk's every column), not for one narrow column's.
   */
  whole?: boolean
  /**
   * Reply in a shared buffer: this one when the rows fit, else a new one (`TransferBuffers`).
   * Without it the rows come back in a new ArrayBuffer, transferred.
   */
  into?: SharedArrayBuffer | null
  /**
   * A binary column (field names from the top, e.g. `['image', 'bytes']`) whose values the
   * decode thread hashes (sha2-256) as it hands them over: `RowDigests`. Only on the shared
   * buffer path of a file read whole; elsewhere no digests come back.
   */
  hash?: string[]
}

/** Each row's sha2-256 of the `hash` column (32 bytes a row) and its value's length in bytes. */
export interface RowDigests {
  sha256: Uint8Array
  lengths: Uint32Array
}

/** A shard's footer: its row count, the rows of each row group, its schema as an IPC stream. */
export interface Footer {
  rows: number
  rowGroups: number[]
  schema: Uint8Array
}

type Reply = {
  id: number
  ipc?: Uint8Array
  /** With `into`: the shared buffer holding the rows (an IPC stream from byte 0, or `layout`'s buffers). */
  shared?: SharedArrayBuffer
  size?: number
  layout?: RowsLayout
  footer?: { rows: number; rowGroups: number[] }
  digests?: RowDigests
  error?: string
}

interface Pending {
  resolve: (reply: Reply) => void
  reject: (error: Error) => void
}

let worker: Worker | undefined
let lastId = 0
const pending = new Map<number, Pending>()

function failAll(error: Error): void {
  worker = undefined
  for (const [id, p] of [...pending]) {
    pending.delete(id)
    p.reject(error)
  }
}

function thread(): Worker {
  if (worker !== undefined) return worker
  const started = new Worker(WORKER_URL)
  started.on('message', (reply: Reply) => {
    const p = pending.get(reply.id)
    if (p === undefined) return
    pending.delete(reply.id)
    if (pending.size === 0) started.unref()
    if (reply.error !== undefined) p.reject(new Error(reply.error))
    else p.resolve(reply)
  })
  // A dead thread fails what it held; the next read starts a fresh one.
  started.on('error', (error) => failAll(error))
  started.on('exit', () => failAll(new Error('the decode thread exited')))
  started.unref()
  worker = started
  return started
}

function ask(message: Record<string, unknown>): Promise<Reply> {
  const id = ++lastId
  return new Promise<Reply>((resolve, reject) => {
    const w = thread()
    pending.set(id, { resolve, reject })
    if (pending.size === 1) w.ref()
    w.postMessage({ id, ...message })
  })
}

/**
 * Rows as their Arrow arrays' buffers in a shared buffer (decode-worker.js, `sendRowsFfi`):
 * the schema as an IPC stream, and per record batch a tree of arrays, each buffer as
 * `[byte offset, bytes]` in the shared buffer (null: absent), in the Arrow C Data
 * Interface's order for its type.
 */
export interface RowsLayout {
  schema: Uint8Array
  batches: ArrayLayout[]
}

export interface ArrayLayout {
  length: number
  nullCount: number
  offset: number
  buffers: ([number, number] | null)[]
  children: ArrayLayout[]
  dictionary?: ArrayLayout
}

/** The rows as an Arrow table, decoded on the decode thread. */
export async function decodeOnThread(
  request: DecodeRequest,
): Promise<{ table: Table; bytes: Uint8Array; digests?: RowDigests }> {
  const reply = await ask({ kind: 'rows', ...request })
  if (reply.shared === undefined) return { table: tableFromIPC(reply.ipc!), bytes: reply.ipc! }
  const bytes = new Uint8Array(reply.shared, 0, reply.size!)
  if (reply.layout === undefined) return { table: tableFromIPC(bytes), bytes }
  const table = tableOfLayout(reply.layout, reply.shared)
  return reply.digests === undefined ? { table, bytes } : { table, bytes, digests: reply.digests }
}

/** An Arrow table over the buffers of `layout` in `shared` (views, no copy). */
export function tableOfLayout(layout: RowsLayout, shared: SharedArrayBuffer): Table {
  const schema = tableFromIPC(layout.schema).schema
  const view = (b: [number, number] | null | undefined) =>
    b === null || b === undefined ? new Uint8Array(0) : new Uint8Array(shared, b[0], b[1])
  const offsets32 = (b: [number, number] | null | undefined) =>
    b === null || b === undefined ? new Int32Array(1) : new Int32Array(shared, b[0], b[1] / 4)
  const offsets64 = (b: [number, number] | null | undefined) =>
    b === null || b === undefined ? new BigInt64Array(1) : new BigInt64Array(shared, b[0], b[1] / 8)
  const build = (type: DataType, node: ArrayLayout): Data => {
    const [validity, first, second] = node.buffers
    const common = {
      offset: node.offset,
      length: node.length,
      nullCount: validity === null || validity === undefined ? 0 : node.nullCount,
      ...(validity === null || validity === undefined ? {} : { nullBitmap: view(validity) }),
    }
    if (DataType.isDictionary(type)) {
      const dictionary = makeVector(build(type.dictionary, node.dictionary!))
      return makeData({ type, ...common, data: view(first) as never, dictionary })
    }
    if (DataType.isUtf8(type) || DataType.isBinary(type))
      return makeData({ type, ...common, valueOffsets: offsets32(first), data: view(second) } as never)
    if (DataType.isLargeUtf8(type) || DataType.isLargeBinary(type))
      return makeData({ type, ...common, valueOffsets: offsets64(first), data: view(second) } as never)
    if (DataType.isList(type))
      return makeData({
        type,
        ...common,
        valueOffsets: offsets32(first),
        child: build(type.children[0]!.type, node.children[0]!),
      })
    if (DataType.isLargeList(type))
      return makeData({
        type,
        ...common,
        valueOffsets: offsets64(first),
        child: build(type.children[0]!.type, node.children[0]!),
      } as never)
    if (DataType.isFixedSizeList(type))
      return makeData({ type, ...common, child: build(type.children[0]!.type, node.children[0]!) })
    if (DataType.isStruct(type))
      return makeData({
        type,
        ...common,
        children: type.children.map((f, k) => build(f.type, node.children[k]!)),
      })
    return makeData({ type, ...common, data: view(first) } as never)
  }
  const struct = new Struct(schema.fields)
  return new Table(
    schema,
    layout.batches.map((node) => new RecordBatch(schema, build(struct, node) as Data<Struct>)),
  )
}

/**
 * Shared buffers that decoded rows come back in, reused from one chunk to the next.
 *
 * A buffer transferred from a thread is new external memory to V8 each time, and the main
 * thread's garbage collector runs a full collection per ~20 MB of it: about one per chunk,
 * 12 a pass of the ingest bench, on a heap of every object the pipeline holds (design/0006).
 * A shared buffer written again is not new memory. The decode thread copies the rows into
 * the one it is sent (one copy of the stream, on that thread) and the caller gives it back
 * once nothing reads the rows any more: a buffer given back while a view of it is still in
 * use would have its bytes overwritten by a later chunk, so only a caller that knows its
 * last reader (the append that stored them) gives back.
 */
export class TransferBuffers {
  readonly #free: SharedArrayBuffer[] = []
  /** The buffer each table's bytes are views of. */
  readonly #of = new WeakMap<object, SharedArrayBuffer>()
  constructor(private readonly keep: number) {}

  /** The largest free buffer, or null (the decode thread then makes one). */
  take(): SharedArrayBuffer | null {
    if (this.#free.length === 0) return null
    let best = 0
    for (let i = 1; i < this.#free.length; i++)
      if (this.#free[i]!.byteLength > this.#free[best]!.byteLength) best = i
    return this.#free.splice(best, 1)[0]!
  }

  /** `owner` (a table decoded from `bytes`) holds views of `bytes`' buffer. */
  lend(owner: object, bytes: Uint8Array): void {
    if (bytes.buffer instanceof SharedArrayBuffer) this.#of.set(owner, bytes.buffer)
  }

  /** Nothing reads `owner`'s bytes any more: its buffer may be filled again. */
  giveBack(owner: object): void {
    const buffer = this.#of.get(owner)
    if (buffer === undefined) return
    this.#of.delete(owner)
    if (this.#free.length < this.keep) this.#free.push(buffer)
  }
}

/** A shard's footer, read on the decode thread (only it loads parquet-wasm). */
export async function footerOnThread(path: string): Promise<Footer> {
  const reply = await ask({ kind: 'footer', path })
  return { ...reply.footer!, schema: reply.ipc! }
}
