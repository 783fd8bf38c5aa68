/**
 * The bridge's framing (design/0007). Every frame is a 16-byte header, then a JSON part,
 * then a binary part (an Arrow IPC stream, or nothing):
 *
 *   u8 kind | u8 0 | u16 0 | u32 id | u32 json bytes | u32 binary bytes   (little-endian)
 *
 * Data frames carry no JSON, so a batch costs one header and its IPC bytes.
 */
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
  #closed = false

  constructor(out: Writable) {
    this.#out = out
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
    const text = json === undefined ? EMPTY : Buffer.from(JSON.stringify(json, plain), 'utf8')
    const pieces = binary instanceof Uint8Array ? [binary] : binary
    let binaryBytes = 0
    for (const piece of pieces) binaryBytes += piece.byteLength
    const head = Buffer.alloc(HEADER)
    head.writeUInt8(kind, 0)
    head.writeUInt32LE(id, 4)
    head.writeUInt32LE(text.length, 8)
    head.writeUInt32LE(binaryBytes, 12)
    this.#out.cork()
    this.#out.write(head)
    if (text.length > 0) this.#out.write(text)
    for (const piece of pieces) if (piece.byteLength > 0) this.#out.write(piece)
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

/** JSON for values of the layers below: bigints as decimal strings, CIDs as strings. */
function plain(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint') return value.toString()
  if (value instanceof Uint8Array) return Array.from(value)
  return value
}
