/**
 * The bridge process behind `dreamdb_dataset` (design/0007): one per Python process,
 * started on first use. Requests arrive as frames on one pipe, answers leave on another;
 * record batches stream as Arrow IPC, pulled by Python with credits so memory stays bounded
 * however slowly the training loop consumes them. stdout is never used (a library that
 * prints cannot corrupt the protocol); stderr is the bridge's log.
 */
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
const operations = new Operations()

interface Running {
  controller: AbortController
  /** Batches Python will accept now, and the wake-up of a pump waiting for more. */
  credit: number
  wake: (() => void) | null
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
  running.set(frame.id, { controller, credit: 0, wake: null })
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
      await writer.write(FrameKind.Batch, id, undefined, next.value)
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

function control(frame: Frame): void {
  const entry = running.get(frame.id)
  if (entry === undefined) return
  if (frame.kind === FrameKind.Credit) entry.credit += Buffer.from(frame.binary).readUInt32LE(0)
  else entry.controller.abort()
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
