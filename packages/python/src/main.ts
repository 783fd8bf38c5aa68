/**
 * The bridge process behind `dreamdb_dataset` (design/0007): one per Python process,
 * started on first use. Requests arrive as frames on one pipe, answers leave on another;
 * record batches stream as Arrow IPC, pulled by Python with credits so memory stays bounded
 * however slowly the training loop consumes them. stdout is never used (a library that
 * prints cannot corrupt the protocol); stderr is the bridge's log.
 */
import { closeSync, openSync, readlinkSync, writevSync } from 'node:fs'
import { Socket } from 'node:net'
import { type Frame, FrameKind, FrameWriter, readFrames } from './frames.js'
import { type Args, ipcOf, Operations, type Stream } from './operations.js'

function fdArgument(flag: string): number {
  const at = process.argv.indexOf(flag)
  const fd = at === -1 ? Number.NaN : Number(process.argv[at + 1])
  if (!Number.isInteger(fd) || fd < 0) {
    process.stderr.write(`dreamdb bridge: ${flag} FD is required\n`)
    process.exit(2)
  }
  return fd
}

const input = new Socket({ fd: fdArgument('--in'), readable: true, writable: false })
const output = new Socket({ fd: fdArgument('--out'), readable: false, writable: true })
const writer = new FrameWriter(output)
const operations = new Operations(process.argv.includes('--no-read-threads') ? { readThreads: false } : {})

/**
 * A piece of shared memory Python handed over with a credit (a file under /dev/shm, or
 * /proc/<pid>/fd/<n> of one): a batch that fits is written there instead of down the pipe,
 * and Python's tensors map it where DataLoader would otherwise copy it (design/0007).
 */
interface Sink {
  token: number
  path: string
  capacity: number
  /** What `/proc/self/fd/<ours>` must read once open (null: no check), see `writeAll`. */
  link: string | null
}

interface Running {
  controller: AbortController
  /** Batches Python will accept now, and the wake-up of a pump waiting for more. */
  credit: number
  wake: (() => void) | null
  /** Sinks not used yet, in the order Python granted them. */
  sinks: Sink[]
  /** Why sinks stopped working for this stream (then every batch takes the pipe). */
  sinkError: string | null
}
const running = new Map<number, Running>()

/** A failure as Python's `DreamDBError`: the stable code, the message, the values involved. */
function errorDocument(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error))
    return { code: 'ERR_BRIDGE_INTERNAL', name: 'Error', message: String(error), details: {} }
  const details: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(error)) {
    if (key === 'code' || key === 'cause' || key === 'stack' || key === 'name') continue
    try {
      JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))
      details[key] = value
    } catch {
      details[key] = String(value)
    }
  }
  const code = (error as { code?: unknown }).code
  return {
    code: typeof code === 'string' && code.startsWith('ERR_') ? code : 'ERR_BRIDGE_INTERNAL',
    name: error.name,
    message: error.message,
    details,
    ...(typeof code === 'string' && code.startsWith('ERR_') ? {} : { stack: error.stack ?? null }),
  }
}

async function answer(frame: Frame): Promise<void> {
  const { op, args } = frame.json as { op: string; args: Args }
  const controller = new AbortController()
  running.set(frame.id, { controller, credit: 0, wake: null, sinks: [], sinkError: null })
  try {
    if (op === 'iter') return await pump(frame.id, operations.iterate(args, controller.signal))
    const outcome = await operations.call(op, args, frame.binary, controller.signal)
    await writer.write(
      FrameKind.Result,
      frame.id,
      outcome.json ?? null,
      outcome.table ? ipcOf(outcome.table) : undefined,
    )
  } catch (error) {
    await writer.write(FrameKind.Error, frame.id, errorDocument(error))
  } finally {
    running.delete(frame.id)
  }
}

/** Send batches while Python has credit; End with the stream's state, or Error. */
async function pump(id: number, stream: Stream): Promise<void> {
  const entry = running.get(id)!
  await writer.write(FrameKind.Result, id, { state: stream.state() })
  try {
    for (;;) {
      while (entry.credit === 0 && !entry.controller.signal.aborted) {
        await new Promise<void>((resolve) => {
          entry.wake = resolve
        })
      }
      if (entry.controller.signal.aborted) break
      const next = await stream.batches.next()
      if (next.done) break
      entry.credit--
      await sendBatch(id, entry, next.value)
    }
  } catch (error) {
    if (!entry.controller.signal.aborted) {
      await writer.write(FrameKind.Error, id, errorDocument(error))
      return
    }
  } finally {
    await stream.batches.return?.().catch(() => {})
  }
  await writer.write(FrameKind.End, id, { state: stream.state() })
}

/** One batch: into the next sink when it fits (a small JSON frame names it), else down the pipe. */
async function sendBatch(id: number, entry: Running, pieces: Uint8Array[]): Promise<void> {
  let bytes = 0
  for (const piece of pieces) bytes += piece.byteLength
  // Sinks too small for this batch are dropped (Python drops them too, on a batch this large).
  while (entry.sinks.length > 0 && entry.sinks[0]!.capacity < bytes) entry.sinks.shift()
  const sink = entry.sinks[0]
  if (sink !== undefined && entry.sinkError === null) {
    try {
      writeAll(sink, pieces, bytes)
      entry.sinks.shift()
      await writer.write(FrameKind.Batch, id, { sink: sink.token, bytes })
      return
    } catch (error) {
      // Python is told once and stops offering sinks; this batch and the rest take the pipe.
      entry.sinkError = error instanceof Error ? error.message : String(error)
      entry.sinks = []
      await writer.write(FrameKind.Batch, id, { sinkError: entry.sinkError }, owned(pieces))
      return
    }
  }
  await writer.write(FrameKind.Batch, id, undefined, owned(pieces))
}

/**
 * Pieces that are views of the iterator's recycled buffers (shared), copied: the pipe may
 * still hold them after `write` returns, and the next batch refills those buffers.
 */
function owned(pieces: Uint8Array[]): Uint8Array[] {
  return pieces.map((piece) => (piece.buffer instanceof SharedArrayBuffer ? Buffer.from(piece) : piece))
}

/**
 * Synchronous on purpose: a few hundred kilobytes into memory-backed pages, cheaper than a
 * hop to the thread pool and back, and the sink is Python's until the frame says it is done.
 */
function writeAll(sink: Sink, pieces: Uint8Array[], bytes: number): void {
  const path = sink.path
  const fd = openSync(path, 'r+')
  try {
    // A /proc/<pid>/fd/<n> path names whatever file holds that number now: check that what
    // we opened is the sink Python made, never another file that got its number.
    if (sink.link !== null && readlinkSync(`/proc/self/fd/${fd}`) !== sink.link)
      throw new Error(`${path} is no longer the sink Python offered`)
    let written = 0
    const rest = pieces.filter((p) => p.byteLength > 0)
    while (written < bytes) {
      let n = writevSync(fd, rest, written)
      if (n <= 0) throw new Error(`short write into ${path}`)
      written += n
      while (rest.length > 0 && n >= rest[0]!.byteLength) n -= rest.shift()!.byteLength
      if (n > 0) rest[0] = rest[0]!.subarray(n)
    }
  } finally {
    closeSync(fd)
  }
}

function control(frame: Frame): void {
  const entry = running.get(frame.id)
  if (entry === undefined) return
  if (frame.kind === FrameKind.Credit) {
    entry.credit += Buffer.from(frame.binary).readUInt32LE(0)
    const sinks = (frame.json as { sinks?: [number, string, number, string | null][] } | null)?.sinks
    if (sinks !== undefined && entry.sinkError === null)
      for (const [token, path, capacity, link] of sinks)
        entry.sinks.push({ token, path, capacity, link: link ?? null })
  } else entry.controller.abort()
  entry.wake?.()
  entry.wake = null
}

async function main(): Promise<void> {
  for await (const frame of readFrames(input)) {
    if (frame.kind === FrameKind.Request) void answer(frame)
    else if (frame.kind === FrameKind.Credit || frame.kind === FrameKind.Cancel) control(frame)
  }
  // Python closed its end (exit, close(), or it died): stop everything and leave.
  for (const entry of running.values()) entry.controller.abort()
  process.exit(0)
}

main().catch((error) => {
  process.stderr.write(
    `dreamdb bridge: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  )
  process.exit(1)
})
