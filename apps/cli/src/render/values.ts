/** Record values from Arrow batches, as JSON-ready data or as short text for a terminal. */
import type { Field } from '@dreamdb/manifest'
import type { RecordBatch } from 'apache-arrow'
import { truncateEnd } from './text.js'

/** How binary values appear: their byte count (`head`) or their bytes in base64 (`export`). */
export type BinaryAs = 'count' | 'base64'

/** One value as JSON-ready data. Ints outside the safe range and anchors become strings. */
export function plainValue(field: Field | undefined, value: unknown, binary: BinaryAs): unknown {
  if (value === null || value === undefined) return null
  if (value instanceof Uint8Array) {
    return binary === 'count' ? { bytes: value.byteLength } : Buffer.from(value).toString('base64')
  }
  if (typeof value === 'bigint') {
    return field === undefined ||
      value > BigInt(Number.MAX_SAFE_INTEGER) ||
      value < -BigInt(Number.MAX_SAFE_INTEGER)
      ? value.toString()
      : Number(value)
  }
  if (field?.family === 'embedding' && typeof value === 'object') {
    const array = (value as { toArray?: () => ArrayLike<number> }).toArray?.() ?? (value as ArrayLike<number>)
    return Array.from(array)
  }
  if (field?.family === 'scalar' && field.kind === 'timestamp' && typeof value === 'number') {
    return value
  }
  return value
}

/** One value as a short cell: binary as a byte count, vectors abbreviated. */
export function displayValue(field: Field | undefined, value: unknown, max = 32): string {
  if (value === null || value === undefined) return '∅'
  if (value instanceof Uint8Array) return `<${value.byteLength} bytes>`
  if (field?.family === 'embedding') {
    const numbers = plainValue(field, value, 'count') as number[]
    const short = (x: number) => (Math.abs(x) >= 1e4 ? x.toExponential(2) : String(Number(x.toFixed(3))))
    return numbers.length <= 4
      ? `[${numbers.map(short).join(', ')}]`
      : `[${numbers.slice(0, 3).map(short).join(', ')}, … ×${numbers.length}]`
  }
  if (field?.family === 'scalar' && field.kind === 'timestamp' && typeof value === 'number') {
    return new Date(value).toISOString()
  }
  return truncateEnd(String(value), max)
}

/** The rows of a batch as plain objects: `_anchor` (a decimal string) then each field. */
export function batchRows(
  batch: RecordBatch,
  fields: Map<string, Field>,
  binary: BinaryAs,
  limit = batch.numRows,
): Record<string, unknown>[] {
  const names = batch.schema.fields.map((f) => f.name)
  const columns = names.map((name) => batch.getChild(name)!)
  const rows: Record<string, unknown>[] = []
  for (let i = 0; i < Math.min(limit, batch.numRows); i++) {
    const row: Record<string, unknown> = {}
    names.forEach((name, c) => {
      const value = columns[c]!.get(i)
      row[name] = name === '_anchor' ? String(value) : plainValue(fields.get(name), value, binary)
    })
    rows.push(row)
  }
  return rows
}
