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
const outputFd = fdArgument('--out')
const output = new Socket({ fd: outputFd, readable: false, writable: true })
const writer = new FrameWriter(output, outputFd)
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
  /** Batches a sink may hold before its frame goes out (Python's `group`, at least 1). */
  group: number
  /** Bytes after which a sink's frame goes out whatever its batch count (`groupBytes`). */
  groupBytes: number
  /** The sink being filled: open once, its batches back to back, one frame for all of them. */
  filling: Filling | null
}

/** A sink taking several batches in a row (one open, one frame; design/0007). */
interface Filling {
  sink: Sink
  fd: number
  /** Where the next batch goes: every batch starts 64-byte aligned, as Arrow's buffers want. */
  at: number
  /** Offset and length of each batch written so far. */
  batches: [number, number][]
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
  running.set(frame.id, {
    controller,
    credit: 0,
    wake: null,
    sinks: [],
    sinkError: null,
    group: 1,
    groupBytes: Number.POSITIVE_INFINITY,
    filling: null,
  })
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
      await flush(id, entry)
      await writer.write(FrameKind.Error, id, errorDocument(error))
      return
    }
  } finally {
    await flush(id, entry)
    await stream.batches.return?.().catch(() => {})
  }
  await writer.write(FrameKind.End, id, { state: stream.state() })
}

/**
 * One batch: into the sink being filled when it fits, else into the next sink, else down the
 * pipe. A sink's batches go out as one frame once it holds `group` of them, when the stream
 * has no credit left (Python must see them to grant more), when the next batch does not fit,
 * and at the end: a frame, a sink open and Python's mapping per group instead of per batch.
 */
async function sendBatch(id: number, entry: Running, pieces: Uint8Array[]): Promise<void> {
  let bytes = 0
  for (const piece of pieces) bytes += piece.byteLength
  if (entry.filling !== null && entry.filling.at + bytes > entry.filling.sink.capacity) await flush(id, entry)
  if (entry.filling === null && entry.sinkError === null) {
    // Sinks too small for this batch are dropped (Python drops them too, on a batch this large).
    while (entry.sinks.length > 0 && entry.sinks[0]!.capacity < bytes) entry.sinks.shift()
    const sink = entry.sinks.shift()
    if (sink !== undefined) {
      try {
        entry.filling = { sink, fd: openSink(sink), at: 0, batches: [] }
      } catch (error) {
        return sinkFailed(id, entry, error, pieces)
      }
    }
  }
  const filling = entry.filling
  if (filling === null) return writer.writeNow(FrameKind.Batch, id, undefined, pieces)
  try {
    writeAll(filling, pieces, bytes)
  } catch (error) {
    await flush(id, entry)
    return sinkFailed(id, entry, error, pieces)
  }
  filling.batches.push([filling.at, bytes])
  filling.at = Math.ceil((filling.at + bytes) / 64) * 64
  if (filling.batches.length >= entry.group || filling.at >= entry.groupBytes || entry.credit === 0)
    await flush(id, entry)
}

/** The sink being filled is done: close it and name its batches to Python. */
async function flush(id: number, entry: Running): Promise<void> {
  const filling = entry.filling
  if (filling === null) return
  entry.filling = null
  closeSync(filling.fd)
  if (filling.batches.length > 0)
    await writer.write(FrameKind.Batch, id, { sink: filling.sink.token, batches: filling.batches })
}

/** Python is told once and stops offering sinks; this batch and the rest take the pipe. */
async function sinkFailed(id: number, entry: Running, error: unknown, pieces: Uint8Array[]): Promise<void> {
  entry.sinkError = error instanceof Error ? error.message : String(error)
  entry.sinks = []
  await writer.writeNow(FrameKind.Batch, id, { sinkError: entry.sinkError }, pieces)
}

/**
 * A sink opened for writing. A /proc/<pid>/fd/<n> path names whatever file holds that number
 * now: check that what we opened is the sink Python made, never another file that got its
 * number.
 */
function openSink(sink: Sink): number {
  const fd = openSync(sink.path, 'r+')
  try {
    if (sink.link !== null && readlinkSync(`/proc/self/fd/${fd}`) !== sink.link)
      throw new Error(`${sink.path} is no longer the sink Python offered`)
  } catch (error) {
    closeSync(fd)
    throw error
  }
  return fd
}

/**
 * Synchronous on purpose: a few hundred kilobytes into memory-backed pages, cheaper than a
 * hop to the thread pool and back, and the pieces may be recycled buffers that the next
 * batch refills (so they must be written before the iterator moves on).
 */
function writeAll(filling: Filling, pieces: Uint8Array[], bytes: number): void {
  let written = 0
  const rest = pieces.filter((p) => p.byteLength > 0)
  while (written < bytes) {
    let n = writevSync(filling.fd, rest, filling.at + written)
    if (n <= 0) throw new Error(`short write into ${filling.sink.path}`)
    written += n
    while (rest.length > 0 && n >= rest[0]!.byteLength) n -= rest.shift()!.byteLength
    if (n > 0) rest[0] = rest[0]!.subarray(n)
  }
}

function control(frame: Frame): void {
  const entry = running.get(frame.id)
  if (entry === undefined) return
  if (frame.kind === FrameKind.Credit) {
    entry.credit += Buffer.from(frame.binary).readUInt32LE(0)
    const document = frame.json as {
      sinks?: [number, string, number, string | null][]
      group?: number
      groupBytes?: number
    } | null
    const { group, groupBytes } = document ?? {}
    if (typeof group === 'number' && Number.isInteger(group) && group >= 1) entry.group = group
    if (typeof groupBytes === 'number' && groupBytes > 0) entry.groupBytes = groupBytes
    const sinks = document?.sinks
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
