/**
 * Where a verified read puts its bytes, and who hashes them.
 *
 * A backend asks the sink for a buffer of the object's size, fills it, and reports how far
 * it has written. Small objects are hashed on the calling thread as the bytes land. Large
 * ones land in shared memory that a worker thread hashes while the backend keeps
 * receiving: on S3 the main thread is busy with the network, so hashing there would run
 * one after the other instead of side by side.
 */
import { Worker } from 'node:worker_threads'
import { Sha256 } from './digest.js'

/** Objects at least this large are hashed on the worker thread. */
export const PARALLEL_HASH_BYTES = 8 << 20
/** The worker is told about new bytes in steps of at least this much. */
const POST_STEP = 1 << 20

export interface ReadSink {
  /** The buffer to fill; called once, when the size is known. */
  buffer(size: number): Uint8Array
  /** Bytes [0, end) of the buffer are final. */
  wrote(end: number): void
}

/** A sink that hashes and, once everything is written, gives the bytes and their digest. */
export interface HashingSink extends ReadSink {
  finish(): Promise<{ bytes: Uint8Array; digest: Uint8Array }>
  /** Release the worker's job after a failed read. */
  abandon(): void
}

export function hashingSink(): HashingSink {
  let sink: HashingSink | undefined
  const pick = (size: number): HashingSink => {
    sink ??= size >= PARALLEL_HASH_BYTES ? new WorkerHashingSink() : new InlineHashingSink()
    return sink
  }
  return {
    buffer: (size) => pick(size).buffer(size),
    wrote: (end) => sink!.wrote(end),
    finish: () => (sink ?? pick(0)).finish(),
    abandon: () => sink?.abandon(),
  }
}

class InlineHashingSink implements HashingSink {
  readonly #hash = new Sha256()
  #bytes = new Uint8Array(0)
  #hashed = 0

  buffer(size: number): Uint8Array {
    this.#bytes = new Uint8Array(size)
    return this.#bytes
  }

  wrote(end: number): void {
    if (end > this.#hashed) this.#hash.update(this.#bytes.subarray(this.#hashed, end))
    this.#hashed = Math.max(this.#hashed, end)
  }

  async finish() {
    return { bytes: this.#bytes, digest: this.#hash.digest() }
  }

  abandon(): void {}
}

// The worker keeps one sha256 per job over the job's SharedArrayBuffer.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads')
const { createHash } = require('node:crypto')
const jobs = new Map()
parentPort.on('message', (m) => {
  if (m.type === 'start') jobs.set(m.id, { hash: createHash('sha256'), bytes: new Uint8Array(m.buffer) })
  else if (m.type === 'update') { const j = jobs.get(m.id); if (j) j.hash.update(j.bytes.subarray(m.from, m.to)) }
  else if (m.type === 'finish') { const j = jobs.get(m.id); jobs.delete(m.id); parentPort.postMessage({ id: m.id, digest: j.hash.digest() }) }
  else if (m.type === 'drop') jobs.delete(m.id)
})
`

let worker: Worker | undefined
let nextJob = 0
const pending = new Map<number, (digest: Uint8Array) => void>()
let active = 0

function hashWorker(): Worker {
  if (worker === undefined) {
    worker = new Worker(WORKER_SOURCE, { eval: true })
    worker.on('message', ({ id, digest }: { id: number; digest: Uint8Array }) => {
      pending.get(id)?.(new Uint8Array(digest))
      pending.delete(id)
    })
    worker.unref()
  }
  return worker
}

class WorkerHashingSink implements HashingSink {
  readonly #id = nextJob++
  #shared: Uint8Array<ArrayBufferLike> = new Uint8Array(0)
  #posted = 0
  #written = 0
  #started = false

  buffer(size: number): Uint8Array {
    this.#shared = new Uint8Array(new SharedArrayBuffer(size))
    this.#started = true
    active++
    hashWorker().ref()
    hashWorker().postMessage({ type: 'start', id: this.#id, buffer: this.#shared.buffer })
    return this.#shared
  }

  wrote(end: number): void {
    this.#written = Math.max(this.#written, end)
    if (this.#written - this.#posted >= POST_STEP) this.#post()
  }

  #post(): void {
    if (this.#written === this.#posted) return
    hashWorker().postMessage({ type: 'update', id: this.#id, from: this.#posted, to: this.#written })
    this.#posted = this.#written
  }

  async finish() {
    this.#post()
    const digest = await new Promise<Uint8Array>((resolve) => {
      pending.set(this.#id, resolve)
      hashWorker().postMessage({ type: 'finish', id: this.#id })
    })
    this.#release()
    // Hand back ordinary memory: shared buffers behave differently when cloned or posted.
    return { bytes: new Uint8Array(this.#shared), digest }
  }

  abandon(): void {
    if (!this.#started) return
    hashWorker().postMessage({ type: 'drop', id: this.#id })
    this.#release()
  }

  #release(): void {
    this.#started = false
    // An idle worker must not keep the process alive.
    if (--active === 0) worker?.unref()
  }
}
