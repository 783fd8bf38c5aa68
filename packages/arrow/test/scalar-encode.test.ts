/**
 * Scalar columns are built straight into their buffers (issue #13); the bytes must be those
 * Arrow's builders (`vectorFromArray`, the path before) gave, buffer for buffer, so stored
 * objects keep their CIDs. The reference below is that path, kept here only.
 */
import type { ScalarField } from '@dreamdb/manifest'
import {
  Bool,
  Dictionary,
  Float64,
  Int32,
  Int64,
  Table,
  TimestampMillisecond,
  tableToIPC,
  Utf8,
  type Vector,
  vectorFromArray,
} from 'apache-arrow'
import { describe, expect, it } from 'vitest'
import { anchorColumn, encodeField, valuesColumn } from '../src/columns.js'

/** The column as `vectorFromArray` built it before issue #13 (values already checked). */
function reference(field: ScalarField, values: readonly unknown[]): Vector {
  const nullable = values.map((v) => (v === undefined ? null : v))
  switch (field.kind) {
    case 'categorical':
      return vectorFromArray(nullable as (string | null)[], new Dictionary(new Utf8(), new Int32(), 0))
    case 'string':
      return vectorFromArray(nullable as (string | null)[], new Utf8())
    case 'int':
      return vectorFromArray(
        nullable.map((v) => (v === null ? null : BigInt(v as number | bigint))),
        new Int64(),
      )
    case 'float':
      return vectorFromArray(nullable as (number | null)[], new Float64())
    case 'bool':
      return vectorFromArray(nullable as (boolean | null)[], new Bool())
    case 'timestamp':
      return vectorFromArray(
        nullable.map((v) => (v === null ? null : v instanceof Date ? v.getTime() : (v as number))),
        new TimestampMillisecond(),
      )
  }
}

const ipc = (name: string, vector: Vector) => tableToIPC(new Table({ [name]: vector }), 'stream')

/** A small seeded generator (mulberry32), so a failure names a case that reproduces. */
function random(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

const STRINGS = [
  '',
  'a',
  'train/3/123.JPEG',
  'héllo',
  '日本語',
  '🦊 fox',
  '\u0000',
  'x'.repeat(300),
  '\ud800', // a lone high surrogate
  '\udc00', // a lone low surrogate (after the one above, a joined encoding would pair them)
  '__proto__',
  'constructor',
]

function valuesFor(kind: ScalarField['kind'], n: number, next: () => number, nulls: number): unknown[] {
  const one = (i: number): unknown => {
    switch (kind) {
      case 'categorical':
        return next() < 0.5 ? STRINGS[i % STRINGS.length] : `label-${Math.floor(next() * 5000)}`
      case 'string':
        return next() < 0.3 ? STRINGS[Math.floor(next() * STRINGS.length)] : `train/${i}/${i * 7}.JPEG`
      case 'int': {
        const r = next()
        if (r < 0.1) return BigInt.asIntN(64, BigInt(Math.floor(next() * 2 ** 53)) << 11n)
        if (r < 0.15)
          return [-(2n ** 63n), 2n ** 63n - 1n, Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER][i % 4]
        if (r < 0.2) return [-1, 0, -0, 2 ** 32, -(2 ** 32), 2 ** 31, -(2 ** 31) - 1][i % 7]
        return Math.floor((next() - 0.5) * 2 ** (1 + Math.floor(next() * 52)))
      }
      case 'float': {
        const r = next()
        if (r < 0.1)
          return [Number.NaN, -0, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 5e-324][i % 5]
        return (next() - 0.5) * 1e6
      }
      case 'bool':
        return next() < 0.5
      case 'timestamp':
        return next() < 0.5 ? new Date(1_790_000_000_000 + i) : Math.floor(next() * 2 ** 45) - 2 ** 44
    }
  }
  return Array.from({ length: n }, (_, i) => {
    if (nulls >= 1) return i % 2 === 0 ? null : undefined
    if (next() < nulls) return next() < 0.5 ? null : undefined
    return one(i)
  })
}

const KINDS: ScalarField['kind'][] = ['categorical', 'string', 'int', 'float', 'bool', 'timestamp']
const LENGTHS = [0, 1, 7, 8, 9, 63, 64, 65, 511, 512, 513, 1024, 4097]
const NULLS = [0, 0.2, 1]

describe('scalar columns built without builders', () => {
  for (const kind of KINDS) {
    it(`${kind}: the same IPC bytes as Arrow's builders (lengths, nulls, unicode)`, () => {
      const field: ScalarField = { name: `f_${kind}`, family: 'scalar', kind }
      let seed = 1
      for (const n of LENGTHS) {
        for (const nulls of NULLS) {
          const values = valuesFor(kind, n, random(seed++), nulls)
          // A trailing null: the builder's buffers end before the slot.
          if (n > 2 && nulls > 0) values[n - 1] = null
          const expected = ipc(field.name, reference(field, values))
          const actual = encodeField(field, values).main
          expect(Buffer.from(actual).equals(Buffer.from(expected)), `${kind} n=${n} nulls=${nulls}`).toBe(
            true,
          )
          // The column also reads as the builders' did.
          expect(valuesColumn(field, values).toJSON()).toEqual(reference(field, values).toJSON())
        }
      }
    })
  }

  it('a dictionary of many distinct labels, in first-seen order', () => {
    const field: ScalarField = { name: 'label', family: 'scalar', kind: 'categorical' }
    const next = random(99)
    const values = Array.from({ length: 20_000 }, () => `class ${Math.floor(next() * 10_000)} ü`)
    expect(Buffer.from(encodeField(field, values).main)).toEqual(
      Buffer.from(ipc('label', reference(field, values))),
    )
  })

  it('a layer segment table (anchors beside the column) is the same too', () => {
    for (const kind of KINDS) {
      const field: ScalarField = { name: 'v', family: 'scalar', kind }
      const values = valuesFor(kind, 100, random(7), 0.2)
      const anchors = anchorColumn(BigUint64Array.from({ length: 100 }, (_, i) => BigInt(i * 3)))
      const table = (column: Vector) => tableToIPC(new Table({ _anchor: anchors, v: column }), 'stream')
      expect(Buffer.from(table(valuesColumn(field, values)))).toEqual(
        Buffer.from(table(reference(field, values))),
      )
    }
  })

  it('refuses a wrong value at its index, with the same message as before', () => {
    const bad: [ScalarField['kind'], unknown, string][] = [
      ['categorical', 3, 'expected a string, got number 3'],
      ['string', true, 'expected a string, got boolean true'],
      ['int', 1.5, 'expected an integer (a safe integer number or an int64 bigint), got number 1.5'],
      ['int', 2n ** 63n, 'expected an integer (a safe integer number or an int64 bigint), got bigint'],
      ['int', 2 ** 53, 'expected an integer'],
      ['float', '1', 'expected a number, got the string "1"'],
      ['bool', 1, 'expected a boolean, got number 1'],
      ['timestamp', new Date(Number.NaN), 'expected a Date or ms since the epoch'],
      ['timestamp', Number.POSITIVE_INFINITY, 'expected a Date or ms since the epoch'],
    ]
    for (const [kind, value, message] of bad) {
      const field: ScalarField = { name: 'x', family: 'scalar', kind }
      expect(() => encodeField(field, [null, value])).toThrow(message)
      try {
        encodeField(field, [null, value])
      } catch (error) {
        expect((error as { index?: number }).index).toBe(1)
      }
    }
  })
})
