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
import { LRUCache } from 'lru-cache'
import type { RowGroup, RowOrder } from '../interface.js'

/** Objects from this size up go to a worker; below it the round trip costs more than it saves. */
export const THREAD_READ_MIN_BYTES = 1 << 20

const WORKER_URL = new URL(
  `./read-worker.${import.meta.url.endsWith('.mjs') ? 'mjs' : 'js'}`,
  import.meta.url,
)

interface Pending {
  worker: Worker
  /** What the request counts for in its worker's load (bytes expected). */
  bytes: number
  resolve: (reply: Reply) => void
  reject: (error: unknown) => void
}

interface Reply {
  id: number
  /** The rows of the object's group were moved (`read` with `rows`). */
  moved?: boolean
  status?: number
  /** The object's length (a GET's body). */
  size?: number
  body?: string
  buffer?: ArrayBuffer | SharedArrayBuffer
  /** A permutation's buffers, back. */
  buffers?: (ArrayBuffer | SharedArrayBuffer)[]
  /** The body went into the spare sent along. */
  intoSpare?: boolean
  digest?: Uint8Array
  error?: { message: string; code?: string }
}

/**
 * Where each row group stands on this side (`read` with `rows`): the worker its parts go to,
 * the parts sent there or settled another way, and whether it was given up (its parts then
 * come back as read).
 */
interface GroupState {
  id: number
  worker: Worker | undefined
  /** Parts sent to the worker or settled another way: a part is counted once. */
  seen: Set<number>
  /** Whether the worker has the group's permutation (sent with its first part). */
  described: boolean
  broken: boolean
}
const groups = new WeakMap<RowGroup, GroupState>()
let lastGroup = 0

function groupState(group: RowGroup): GroupState {
  let state = groups.get(group)
  if (state === undefined) {
    state = { id: ++lastGroup, worker: undefined, seen: new Set(), described: false, broken: false }
    groups.set(group, state)
    const entry = state
    const abandon = () => breakGroup(entry)
    if (group.signal?.aborted) entry.broken = true
    else group.signal?.addEventListener('abort', abandon, { once: true })
  }
  return state
}

/** A group's parts held by its worker go back as read, and the parts still to come are read alone. */
function breakGroup(state: GroupState): void {
  if (state.broken) return
  state.broken = true
  state.worker?.postMessage({ id: 0, release: state.id })
}

/**
 * Called once a part's get has settled, however it went: a part that never reached a read
 * thread (read on the caller's thread, missing, failed before) breaks its group, so the
 * parts the worker holds for it come back (as read). A part that went to the thread is
 * settled there already. @internal
 */
export function forgoRows(order: RowOrder): void {
  const state = groupState(order.group)
  if (state.seen.has(order.part)) return
  state.seen.add(order.part)
  breakGroup(state)
}

let shared: ReadThreads | undefined
/** One pool per process, whatever the number of stores open. */
export function sharedReadThreads(): ReadThreads {
  shared ??= new ReadThreads()
  return shared
}

/**
 * The process's read threads for CPU work beside the caller's (a shuffled window's rows put
 * in order, @dreamdb/dataset), or `undefined` on one core, where a worker would only take
 * turns with the caller. @internal
 */
export function readThreadsForWork(): Pick<ReadThreads, 'permuteRows'> | undefined {
  return availableParallelism() > 1 ? sharedReadThreads() : undefined
}

/** A small pool of reading threads, started on first use, that never keeps the process alive when idle. */
/**
 * A shuffled window's rows to put in order (`permuteRows`): `buffers` hold the window's rows
 * of `rowBytes` bytes, buffer `b` from byte `offsets[b]`; afterwards position `p` (row
 * `rowOf[p]` of buffer `bucketOf[p]`) holds the row that position `order[p]` held.
 */
export interface RowPermutation {
  buffers: (ArrayBuffer | SharedArrayBuffer)[]
  offsets: number[]
  rowBytes: number
  bucketOf: Uint32Array
  rowOf: Uint32Array
  order: Uint32Array
}

export class ReadThreads {
  readonly #size: number
  #workers: Worker[] = []
  /** Requests each worker holds and the bytes they are expected to bring: a new one goes to the least loaded (below). */
  readonly #load = new Map<Worker, { requests: number; bytes: number }>()
  /**
   * Body sizes of GETs answered, by URL: objects are content addressed, so an object's size
   * never changes, and the next pass over a dataset knows what each GET will weigh before
   * sending it (a few thousand entries are a few hundred kilobytes).
   */
  readonly #sizes = new LRUCache<string, number>({ max: 16_384 })
  /** Bytes each worker was given so far: between workers equally loaded, the one given less takes the next (so equal requests alternate). */
  readonly #served = new Map<Worker, number>()
  /** What a GET of unknown size counts for: the mean of the bodies received so far. */
  #meanGet = { bytes: 0, count: 0 }
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
   * the shared buffer `into` when given (filled in place; only the digest comes back), else
   * into a new buffer transferred back.
   */
  async read(
    fd: number,
    size: number,
    into?: SharedArrayBuffer,
    rows?: { order: RowOrder; digest: Uint8Array },
  ): Promise<{ bytes: Uint8Array; digest: Uint8Array; moved: boolean; rowsAt?: number }> {
    const request: Record<string, unknown> = into === undefined ? { fd, size } : { fd, size, spare: into }
    let worker: Worker | undefined
    /** Where the rows were taken to begin, when they go to a thread to be moved. */
    let rowsAt: number | undefined
    if (rows !== undefined) {
      // Every part of a group goes to one worker, which holds the parts it has read and
      // hashed until the last one is in, then moves the rows across them (design/0005).
      const { group, part } = rows.order
      const state = groupState(group)
      const offset = size - group.trailer - (group.counts[part] ?? 0) * group.rowBytes
      // The rows must lie inside the object (else it comes back as read).
      const fits =
        offset >= 0 &&
        group.trailer >= 0 &&
        Number.isSafeInteger(offset) &&
        group.rowBytes > 0 &&
        group.counts[part] !== undefined
      if (!state.broken && !state.seen.has(part) && fits) {
        state.seen.add(part)
        worker = state.worker ??= this.#worker()
        request.rows = {
          group: state.id,
          part,
          parts: group.counts.length,
          offset,
          count: group.counts[part],
          expect: rows.digest,
          ...(state.described
            ? {}
            : {
                rowBytes: group.rowBytes,
                bucketOf: group.bucketOf,
                rowOf: group.rowOf,
                order: group.order,
              }),
        }
        state.described = true
        rowsAt = offset
      } else forgoRows(rows.order)
    }
    const reply = await this.#ask(request, [], undefined, size, worker)
    return {
      bytes: new Uint8Array(into ?? reply.buffer!, 0, size),
      digest: new Uint8Array(reply.digest!),
      moved: reply.moved === true,
      ...(reply.moved === true && rowsAt !== undefined ? { rowsAt } : {}),
    }
  }

  /**
   * Hash the first `size` bytes of a buffer already in memory on a worker. An ArrayBuffer is
   * transferred there and back (unusable meanwhile; the bytes come back as a new view of
   * it); a SharedArrayBuffer is hashed in place, from `offset` (a put's view into a larger
   * shared buffer). An abort of `signal` rejects at once with its reason.
   */
  async hash(
    buffer: ArrayBuffer | SharedArrayBuffer,
    size = buffer.byteLength,
    options: { offset?: number; signal?: AbortSignal | undefined } = {},
  ): Promise<{ bytes: Uint8Array; digest: Uint8Array }> {
    const { offset = 0, signal } = options
    if (buffer instanceof SharedArrayBuffer) {
      const reply = await this.#ask({ buffer, size, offset }, [], signal, size)
      return { bytes: new Uint8Array(buffer, offset, size), digest: new Uint8Array(reply.digest!) }
    }
    if (offset !== 0) throw new RangeError('only a shared buffer is hashed from an offset')
    const reply = await this.#ask({ buffer, size }, [buffer], signal, size)
    return { bytes: new Uint8Array(reply.buffer!, 0, size), digest: new Uint8Array(reply.digest!) }
  }

  /**
   * An HTTP GET sent and received on a worker (`request`: URL and signed headers), its body
   * hashed there as it lands. An answer other than 200 comes back as its status and the
   * start of its body; a failed connection or a deadline as an error with a `code`
   * (`ERR_CAS_SILENT`: no answer or no body byte within `timeoutMs`;
   * `ERR_CAS_CONNECT_TIMEOUT`; `ERR_CAS_SHORT_BODY`; or the socket's own, such as
   * ECONNREFUSED). An abort of `signal` stops the request on the worker.
   *
   * Buffers (`recycling`): the body goes into the shared `spare` when it fits (at least
   * half of it, so that a small object does not pin a large buffer; `intoSpare`), else into
   * a new SharedArrayBuffer (`shared`) or, without either, a transferred ArrayBuffer.
   */
  async get(
    request: { url: string; headers: Record<string, string>; timeoutMs: number; connectTimeoutMs: number },
    signal?: AbortSignal,
    buffers: { spare?: SharedArrayBuffer | undefined; shared?: boolean } = {},
    expected?: number,
  ): Promise<{
    status: number
    body?: string
    bytes?: Uint8Array
    digest?: Uint8Array
    intoSpare?: boolean
  }> {
    const { spare, shared } = buffers
    const mean = this.#meanGet
    const weight =
      expected ?? this.#sizes.get(request.url) ?? (mean.count === 0 ? 0 : mean.bytes / mean.count)
    const reply = await this.#ask(
      { get: request, ...(spare === undefined ? {} : { spare }), ...(shared ? { shared: true } : {}) },
      [],
      signal,
      weight,
    )
    if (reply.size !== undefined) {
      this.#sizes.set(request.url, reply.size)
      mean.bytes += reply.size
      mean.count++
    }
    if (reply.digest === undefined) return { status: reply.status!, body: reply.body ?? '' }
    const intoSpare = reply.intoSpare === true
    return {
      status: reply.status!,
      bytes: new Uint8Array(intoSpare ? spare! : reply.buffer!, 0, reply.size!),
      digest: new Uint8Array(reply.digest!),
      intoSpare,
    }
  }

  /**
   * Put the rows of a shuffled window into its order on a worker, in place (see
   * `permuteRows` in read-worker.js). An ArrayBuffer is transferred there and back (the
   * caller's views of it are detached; the buffers returned are the same bytes, moved); a
   * SharedArrayBuffer is permuted where it is and returned as it is.
   */
  async permuteRows(
    permute: RowPermutation,
    signal?: AbortSignal,
  ): Promise<(ArrayBuffer | SharedArrayBuffer)[]> {
    const transfer = permute.buffers.filter((b): b is ArrayBuffer => !(b instanceof SharedArrayBuffer))
    const reply = await this.#ask({ permute }, transfer, signal)
    return reply.buffers!
  }

  /** Each worker's requests in hand and the bytes they weigh, in the order the workers started (for tests). @internal */
  loads(): { requests: number; bytes: number }[] {
    return this.#workers.map((w) => ({ ...this.#load.get(w)! }))
  }

  /** `bytes`: what the request weighs in its worker's load (its size, or a GET's estimate). */
  async #ask(
    request: object,
    transfer: ArrayBuffer[] = [],
    signal?: AbortSignal,
    bytes = 0,
    to?: Worker,
  ): Promise<Reply> {
    signal?.throwIfAborted()
    const id = ++this.#lastId
    let stop: (() => void) | undefined
    const reply = await new Promise<Reply>((resolve, reject) => {
      // A group's worker, unless it died since (then a fresh one, and the group is given up there).
      const worker = to !== undefined && this.#workers.includes(to) ? to : this.#worker()
      this.#pending.set(id, { worker, bytes, resolve, reject })
      const load = this.#load.get(worker)!
      load.requests++
      load.bytes += bytes
      this.#served.set(worker, (this.#served.get(worker) ?? 0) + bytes)
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

  /**
   * The worker with the fewest bytes in hand (then the fewest requests), or a new worker
   * while the pool is not full and every one is busy. Not round robin: a dataset pass asks
   * for a large embedding object and a small label object in turn, and with two threads
   * round robin gave every large one, and so nearly all the hashing, to one thread (from
   * MinIO, 1M x 128-d: 510-580 against 30-40 ms of CPU per pass). Nor by requests alone:
   * a thread waiting on two small answers then took a third large body beside one busy with
   * two. Hashing costs by the byte; a GET's weight is its size when the caller or an earlier
   * read knows it, else the mean of those received. Ties go to the worker given fewer bytes
   * so far.
   */
  #worker(): Worker {
    let least: Worker | undefined
    let leastLoad = { requests: Number.POSITIVE_INFINITY, bytes: Number.POSITIVE_INFINITY }
    let leastServed = Number.POSITIVE_INFINITY
    for (const w of this.#workers) {
      const load = this.#load.get(w)!
      const served = this.#served.get(w) ?? 0
      if (
        load.bytes < leastLoad.bytes ||
        (load.bytes === leastLoad.bytes &&
          (load.requests < leastLoad.requests ||
            (load.requests === leastLoad.requests && served < leastServed)))
      ) {
        leastServed = served
        least = w
        leastLoad = load
      }
    }
    if (least !== undefined && (leastLoad.requests === 0 || this.#workers.length >= this.#size)) return least
    const worker = new Worker(WORKER_URL)
    this.#load.set(worker, { requests: 0, bytes: 0 })
    worker.on('message', (reply: Reply) => this.#settle(reply.id, (p) => p.resolve(reply)))
    // A dead worker fails what it held; the next read starts a fresh one.
    worker.on('error', (error) => this.#failAll(worker, error))
    worker.on('exit', () => this.#failAll(worker, new Error('a read thread exited')))
    this.#workers.push(worker)
    return worker
  }

  #settle(id: number, fn: (pending: Pending) => void): void {
    const pending = this.#pending.get(id)
    if (pending === undefined) return
    this.#pending.delete(id)
    const load = this.#load.get(pending.worker)
    if (load !== undefined) {
      load.requests--
      load.bytes -= pending.bytes
    }
    if (this.#pending.size === 0) for (const w of this.#workers) w.unref()
    fn(pending)
  }

  #failAll(worker: Worker, error: unknown): void {
    this.#workers = this.#workers.filter((w) => w !== worker)
    this.#load.delete(worker)
    this.#served.delete(worker)
    for (const [id, pending] of [...this.#pending]) {
      if (pending.worker === worker) this.#settle(id, (p) => p.reject(error))
    }
  }
}
