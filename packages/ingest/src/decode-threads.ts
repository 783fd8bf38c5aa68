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
}

/** A shard's footer: its row count, the rows of each row group, its schema as an IPC stream. */
export interface Footer {
  rows: number
  rowGroups: number[]
  schema: Uint8Array
}

type Reply = { id: number; ipc?: Uint8Array; footer?: { rows: number; rowGroups: number[] }; error?: string }

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

/** The rows as an Arrow IPC stream, decoded on the decode thread. */
export async function decodeOnThread(request: DecodeRequest): Promise<Uint8Array> {
  return (await ask({ kind: 'rows', ...request })).ipc!
}

/** A shard's footer, read on the decode thread (only it loads parquet-wasm). */
export async function footerOnThread(path: string): Promise<Footer> {
  const reply = await ask({ kind: 'footer', path })
  return { ...reply.footer!, schema: reply.ipc! }
}
