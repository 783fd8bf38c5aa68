/**
 * Where output goes and how it looks: colour only on a TTY and never with NO_COLOR or
 * --no-color; JSON that can hold bigints and CIDs.
 */
import type { Writable } from 'node:stream'
import { CID } from 'multiformats/cid'

export interface OutStream {
  write(chunk: string | Uint8Array, callback?: (error?: Error | null) => void): boolean
  isTTY?: boolean
  columns?: number
  once(event: 'drain', listener: () => void): unknown
}

export interface Io {
  stdout: OutStream & Partial<Pick<Writable, 'on'>>
  stderr: OutStream
  env: NodeJS.ProcessEnv
  cwd: string
}

/** Whether to colour what goes to `stream`. */
export function colorFor(stream: OutStream, env: NodeJS.ProcessEnv, flag = true): boolean {
  if (!flag) return false
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false
  if (env.TERM === 'dumb') return false
  return stream.isTTY === true
}

const CODES = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  cyan: [36, 39],
} as const

export type Style = keyof typeof CODES

/** `paint(true)('bold', 'x')` is bold on a colour terminal and plain otherwise. */
export function painter(color: boolean): (style: Style, text: string) => string {
  return (style, text) => (color ? `\u001b[${CODES[style][0]}m${text}\u001b[${CODES[style][1]}m` : text)
}

/** Write and wait for the stream to take it (backpressure for large outputs). */
export async function write(stream: OutStream, chunk: string | Uint8Array): Promise<void> {
  if (!stream.write(chunk)) await new Promise<void>((resolve) => stream.once('drain', resolve))
}

/** JSON with bigints as decimal strings (anchors are uint64) and CIDs as strings. */
export function toJson(value: unknown, indent: number | undefined = 2): string {
  return JSON.stringify(
    value,
    function (this: Record<string, unknown>, key, v) {
      if (typeof v === 'bigint') return v.toString()
      // JSON.stringify calls CID#toJSON before the replacer; look at the value it replaced.
      const cid = CID.asCID(this[key])
      if (cid !== null) return cid.toString()
      return v
    },
    indent,
  )
}
