/**
 * Large objects are hashed on worker threads, so verification (SHA-256 over every byte, the
 * largest cost of a streaming read) runs beside the caller's work instead of inside it. On
 * a folder the main thread opens the file and a worker reads it through the same
 * descriptor; an S3 object is fetched by a worker over plain HTTP with headers the main
 * thread signed (`get`), or, through the SDK, received on the main thread and its buffer
 * sent over (`hash`). Either way the bytes come back without a copy (transferred).
 *
 * The worker is an ordinary module file, read-worker.js, beside this one: in src/backends/
 * under a test runner, in dist/ when built (tsup builds it as a second entry), and in a
 * bundle that inlines this package when that bundle builds it too (the Python bridge's,
 * whose files end in .mjs: the worker's name takes this module's extension).
 *
 * @internal
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'

/** Objects from this size up go to a worker; below it the round trip costs more than it saves. */
export const THREAD_READ_MIN_BYTES = 1 << 20

const WORKER_URL = new URL(
  `./read-worker.${import.meta.url.endsWith('.mjs') ? 'mjs' : 'js'}`,
  import.meta.url,
)

interface Pending {
  worker: Worker
  resolve: (reply: Reply) => void
  reject: (error: unknown) => void
}

interface Reply {
  id: number
  status?: number
  /** The object's length when `buffer` is a spare larger than it. */
  size?: number
  body?: string
  buffer?: ArrayBuffer
  /** A spare that was sent along and not used (it did not fit). */
  unused?: ArrayBuffer
  digest?: Uint8Array
  error?: { message: string; code?: string }
}

let shared: ReadThreads | undefined
/** One pool per process, whatever the number of stores open. */
export function sharedReadThreads(): ReadThreads {
  shared ??= new ReadThreads()
  return shared
}

/** A small pool of reading threads, started on first use, that never keeps the process alive when idle. */
export class ReadThreads {
  readonly #size: number
  #workers: Worker[] = []
  #next = 0
  #lastId = 0
  readonly #pending = new Map<number, Pending>()

  /**
   * One thread per core, up to four, so that on two cores both are hashing while the caller
   * decodes (design/0002).
   */
  constructor(size = Math.max(1, Math.min(4, availableParallelism()))) {
    this.#size = size
  }

  /**
   * Read `size` bytes of an open descriptor from offset 0 and hash them, on a worker: into
   * `spare` when given (at least `size` bytes; transferred there and back, so views of it
   * are detached meanwhile), else into a new buffer.
   */
  async read(
    fd: number,
    size: number,
    spare?: ArrayBuffer,
  ): Promise<{ bytes: Uint8Array; digest: Uint8Array }> {
    const reply =
      spare === undefined ? await this.#ask({ fd, size }) : await this.#ask({ fd, size, spare }, [spare])
    return { bytes: new Uint8Array(reply.buffer!, 0, size), digest: new Uint8Array(reply.digest!) }
  }

  /**
   * Hash bytes already in memory on a worker. The buffer is transferred there and back, so
   * `buffer` is unusable meanwhile; its first `size` bytes come back as a new view of it.
   */
  async hash(
    buffer: ArrayBuffer,
    size = buffer.byteLength,
  ): Promise<{ bytes: Uint8Array; digest: Uint8Array }> {
    const reply = await this.#ask({ buffer, size }, [buffer])
    return { bytes: new Uint8Array(reply.buffer!, 0, size), digest: new Uint8Array(reply.digest!) }
  }

  /**
   * An HTTP GET sent and received on a worker (`request`: URL and signed headers), its body
   * hashed there as it lands. An answer other than 200 comes back as its status and the
   * start of its body; a failed connection or a deadline as an error with a `code`
   * (`ERR_CAS_SILENT`: no answer or no body byte within `timeoutMs`;
   * `ERR_CAS_CONNECT_TIMEOUT`; `ERR_CAS_SHORT_BODY`; or the socket's own, such as
   * ECONNREFUSED). An abort of `signal` stops the request on the worker. A `spare` buffer
   * is filled when the body fits it (at least half of it, so that a small object does not
   * pin a large buffer), else handed back as `unused`.
   */
  async get(
    request: { url: string; headers: Record<string, string>; timeoutMs: number; connectTimeoutMs: number },
    signal?: AbortSignal,
    spare?: ArrayBuffer,
  ): Promise<{
    status: number
    body?: string
    bytes?: Uint8Array
    digest?: Uint8Array
    unused?: ArrayBuffer
  }> {
    const reply = await this.#ask(
      spare === undefined ? { get: request } : { get: request, spare },
      spare === undefined ? [] : [spare],
      signal,
    )
    const unused = reply.unused === undefined ? {} : { unused: reply.unused }
    return reply.buffer === undefined
      ? { status: reply.status!, body: reply.body ?? '', ...unused }
      : {
          status: reply.status!,
          bytes: new Uint8Array(reply.buffer, 0, reply.size ?? reply.buffer.byteLength),
          digest: new Uint8Array(reply.digest!),
          ...unused,
        }
  }

  async #ask(request: object, transfer: ArrayBuffer[] = [], signal?: AbortSignal): Promise<Reply> {
    signal?.throwIfAborted()
    const id = ++this.#lastId
    let stop: (() => void) | undefined
    const reply = await new Promise<Reply>((resolve, reject) => {
      const worker = this.#worker()
      this.#pending.set(id, { worker, resolve, reject })
      if (this.#pending.size === 1) for (const w of this.#workers) w.ref()
      worker.postMessage({ id, ...request }, transfer)
      if (signal !== undefined) {
        stop = () => {
          worker.postMessage({ id, cancel: true })
          this.#settle(id, (p) => p.reject(signal.reason))
        }
        signal.addEventListener('abort', stop, { once: true })
      }
    }).finally(() => {
      if (stop !== undefined) signal?.removeEventListener('abort', stop)
    })
    if (reply.error !== undefined) {
      throw Object.assign(new Error(reply.error.message), { code: reply.error.code })
    }
    return reply
  }

  #worker(): Worker {
    if (this.#workers.length < this.#size) {
      const worker = new Worker(WORKER_URL)
      worker.on('message', (reply: Reply) => this.#settle(reply.id, (p) => p.resolve(reply)))
      // A dead worker fails what it held; the next read starts a fresh one.
      worker.on('error', (error) => this.#failAll(worker, error))
      worker.on('exit', () => this.#failAll(worker, new Error('a read thread exited')))
      this.#workers.push(worker)
      return worker
    }
    return this.#workers[this.#next++ % this.#workers.length]!
  }

  #settle(id: number, fn: (pending: Pending) => void): void {
    const pending = this.#pending.get(id)
    if (pending === undefined) return
    this.#pending.delete(id)
    if (this.#pending.size === 0) for (const w of this.#workers) w.unref()
    fn(pending)
  }

  #failAll(worker: Worker, error: unknown): void {
    this.#workers = this.#workers.filter((w) => w !== worker)
    for (const [id, pending] of [...this.#pending]) {
      if (pending.worker === worker) this.#settle(id, (p) => p.reject(error))
    }
  }
}
