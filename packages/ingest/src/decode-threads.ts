/**
 * Parquet rows decoded on a thread of their own, so that reading the next chunk (parquet-wasm:
 * decompress, decode, re-encode as Arrow IPC) runs beside the main thread's encoding,
 * hashing and writing of the one before (issue #13). The rows come back as an IPC stream
 * whose buffer is transferred, not copied.
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
}

interface Pending {
  resolve: (ipc: Uint8Array) => void
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
  started.on('message', (reply: { id: number; ipc?: Uint8Array; error?: string }) => {
    const p = pending.get(reply.id)
    if (p === undefined) return
    pending.delete(reply.id)
    if (pending.size === 0) started.unref()
    if (reply.error !== undefined) p.reject(new Error(reply.error))
    else p.resolve(reply.ipc!)
  })
  // A dead thread fails what it held; the next read starts a fresh one.
  started.on('error', (error) => failAll(error))
  started.on('exit', () => failAll(new Error('the decode thread exited')))
  started.unref()
  worker = started
  return started
}

/** The rows as an Arrow IPC stream, decoded on the decode thread. */
export function decodeOnThread(request: DecodeRequest): Promise<Uint8Array> {
  const id = ++lastId
  return new Promise<Uint8Array>((resolve, reject) => {
    const w = thread()
    pending.set(id, { resolve, reject })
    if (pending.size === 1) w.ref()
    w.postMessage({ id, ...request })
  })
}
