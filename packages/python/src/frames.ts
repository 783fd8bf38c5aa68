/**
 * The bridge's framing (design/0007). Every frame is a 16-byte header, then a JSON part,
 * then a binary part (an Arrow IPC stream, or nothing):
 *
 *   u8 kind | u8 0 | u16 0 | u32 id | u32 json bytes | u32 binary bytes   (little-endian)
 *
 * Data frames carry no JSON, so a batch costs one header and its IPC bytes.
 */
import { writevSync } from 'node:fs'
import type { Readable, Writable } from 'node:stream'

export const FrameKind = {
  /** Python -> bridge: `{ op, args }` (+ an IPC stream for ops that take data). */
  Request: 1,
  /** bridge -> Python: the result of a request (+ an IPC stream for ops that return data). */
  Result: 2,
  /** bridge -> Python: `{ code, message, name, details }`; ends the request or stream. */
  Error: 3,
  /**
   * bridge -> Python: one record batch of a stream, as a self-contained IPC stream; or, with
   * JSON `{ sink, batches: [[offset, bytes], ...] }` and no binary, batches written back to
   * back (each a self-contained IPC stream) into the shared-memory sink `sink`.
   */
  Batch: 4,
  /** bridge -> Python: a stream ended (JSON: its state). */
  End: 5,
  /**
   * Python -> bridge: the stream may send `u32` more batches (binary part, 4 bytes); JSON
   * `{ sinks: [[token, path, capacity, link], ...], group }` optionally hands over shared
   * memory for them, `group` batches at most in each sink.
   */
  Credit: 6,
  /** Python -> bridge: stop a stream; it answers with End. */
  Cancel: 7,
} as const
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind]

export interface Frame {
  kind: FrameKind
  id: number
  json: unknown
  binary: Uint8Array
}

const HEADER = 16
const EMPTY = new Uint8Array(0)

/** Frames read from a byte stream, in order. Ends when the stream does. */
export async function* readFrames(input: Readable): AsyncGenerator<Frame> {
  // Chunks are joined only when a whole frame has arrived: linear in the frame's size.
  let chunks: Buffer[] = []
  let size = 0
  const first = (n: number): Buffer => {
    if (chunks[0]!.length < n) chunks = [Buffer.concat(chunks, size)]
    return chunks[0]!
  }
  const consume = (n: number): Buffer => {
    const joined = first(n)
    const rest = joined.subarray(n)
    chunks = rest.length > 0 ? [rest] : []
    size -= n
    return joined.subarray(0, n)
  }
  for await (const chunk of input as AsyncIterable<Buffer>) {
    chunks.push(chunk)
    size += chunk.length
    while (size >= HEADER) {
      const head = first(HEADER)
      const jsonBytes = head.readUInt32LE(8)
      const binaryBytes = head.readUInt32LE(12)
      if (size < HEADER + jsonBytes + binaryBytes) break
      const frame = consume(HEADER + jsonBytes + binaryBytes)
      const kind = frame.readUInt8(0) as FrameKind
      const id = frame.readUInt32LE(4)
      const json = jsonBytes > 0 ? JSON.parse(frame.toString('utf8', HEADER, HEADER + jsonBytes)) : null
      const binary = binaryBytes > 0 ? aligned(frame.subarray(HEADER + jsonBytes)) : EMPTY
      yield { kind, id, json, binary }
    }
  }
}

/** Arrow's typed-array views need their byte offset aligned to 8: copy when it is not. */
function aligned(bytes: Buffer): Uint8Array {
  return bytes.byteOffset % 8 === 0 ? bytes : new Uint8Array(bytes)
}

/** Writes frames, waiting for the pipe to drain so memory stays bounded. */
export class FrameWriter {
  readonly #out: Writable
  /** The descriptor under `out`, for `writeNow` (none: `writeNow` copies and queues). */
  readonly #fd: number | undefined
  #closed = false

  constructor(out: Writable, fd?: number) {
    this.#out = out
    this.#fd = fd
    out.on('error', () => {
      this.#closed = true
    })
    out.on('close', () => {
      this.#closed = true
    })
  }

  get closed(): boolean {
    return this.#closed
  }

  /** One frame; `binary` may come in pieces, sent back to back in one writev (not joined). */
  async write(
    kind: FrameKind,
    id: number,
    json: unknown,
    binary: Uint8Array | readonly Uint8Array[] = EMPTY,
  ): Promise<void> {
    if (this.#closed) return
    const pieces = binary instanceof Uint8Array ? [binary] : binary
    return this.#queue(framed(kind, id, json, pieces))
  }

  /**
   * One frame whose pieces may be views of shared buffers the caller refills as soon as this
   * returns (recycled read buffers): while nothing is queued on the stream, the frame goes
   * into the pipe at once, synchronously, and only what the pipe cannot take now is copied
   * and queued. Copying every batch for `write` cost a copy of every byte; the pipe mostly
   * has room.
   */
  async writeNow(kind: FrameKind, id: number, json: unknown, pieces: readonly Uint8Array[]): Promise<void> {
    if (this.#closed) return
    const all = framed(kind, id, json, pieces)
    let rest: Uint8Array[] = all
    if (this.#fd !== undefined && this.#out.writableLength === 0) {
      try {
        rest = afterSyncWrites(this.#fd, all)
      } catch (error) {
        // The reader is gone (EPIPE) or the descriptor failed: as the stream's 'error' would.
        this.#closed = true
        if ((error as NodeJS.ErrnoException).code === 'EPIPE') return
        throw error
      }
    }
    // A view of a recycled (shared) buffer is copied: the stream may hold it after we return.
    return this.#queue(
      rest.map((piece) => (piece.buffer instanceof SharedArrayBuffer ? Buffer.from(piece) : piece)),
    )
  }

  async #queue(pieces: readonly Uint8Array[]): Promise<void> {
    if (pieces.length === 0) return
    this.#out.cork()
    for (const piece of pieces) this.#out.write(piece)
    this.#out.uncork()
    if (this.#out.writableNeedDrain && !this.#closed) {
      await new Promise<void>((resolve) => {
        const done = () => {
          this.#out.off('drain', done)
          this.#out.off('close', done)
          resolve()
        }
        this.#out.on('drain', done)
        this.#out.on('close', done)
      })
    }
  }
}

/** A frame's bytes as pieces: header, JSON, then the binary pieces as they are (empty ones left out). */
function framed(kind: FrameKind, id: number, json: unknown, pieces: readonly Uint8Array[]): Uint8Array[] {
  const text = json === undefined ? EMPTY : Buffer.from(JSON.stringify(json, plain), 'utf8')
  let binaryBytes = 0
  for (const piece of pieces) binaryBytes += piece.byteLength
  const head = Buffer.alloc(HEADER)
  head.writeUInt8(kind, 0)
  head.writeUInt32LE(id, 4)
  head.writeUInt32LE(text.length, 8)
  head.writeUInt32LE(binaryBytes, 12)
  const out: Uint8Array[] = [head]
  if (text.length > 0) out.push(text)
  for (const piece of pieces) if (piece.byteLength > 0) out.push(piece)
  return out
}

/**
 * Writes `pieces` to a non-blocking descriptor until it would block; returns what is left
 * (views into the pieces, the first one possibly cut).
 */
function afterSyncWrites(fd: number, pieces: Uint8Array[]): Uint8Array[] {
  const rest = pieces.slice()
  while (rest.length > 0) {
    let n: number
    try {
      n = writevSync(fd, rest)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break
      throw error
    }
    while (rest.length > 0 && n >= rest[0]!.byteLength) n -= rest.shift()!.byteLength
    if (n > 0) rest[0] = rest[0]!.subarray(n)
  }
  return rest
}

/** JSON for values of the layers below: bigints as decimal strings, CIDs as strings. */
function plain(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString()
  if (value instanceof Uint8Array) return Array.from(value)
  return value
}
