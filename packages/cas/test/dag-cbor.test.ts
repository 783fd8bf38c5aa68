import * as dagCbor from '@ipld/dag-cbor'
import { describe, expect, it } from 'vitest'
import {
  cidOf,
  decodeStrict,
  encodeStrict,
  ObjectShapeError,
  type StrictDecoder,
  shape,
} from '../src/index.js'

class Corrupt extends Error {
  readonly code = 'ERR_TEST_CORRUPT'
}

interface Point {
  name: string
  at: [number, number]
  tags: Record<string, boolean>
}

const pointDecoder: StrictDecoder<Point> = {
  check(value) {
    if ((value as { kind?: unknown } | null)?.kind !== 'point') throw new Error('not a point')
  },
  read(value) {
    const m = shape.map(value, 'point', ['kind', 'name', 'at', 'tags'])
    const at = shape.list(m.at, 'at', (v, path) => shape.int(v, path, -10, 10))
    if (at.length !== 2) throw new ObjectShapeError('at must hold 2 numbers')
    return {
      name: shape.string(m.name, 'name'),
      at: [at[0]!, at[1]!],
      tags: shape.record(m.tags, 'tags', shape.bool),
    }
  },
  form: (p) => ({ kind: 'point', name: p.name, at: p.at, tags: p.tags }),
  corrupt: (reason, options) => new Corrupt(reason, options),
}

const point: Point = { name: 'p', at: [1, -2], tags: { a: true } }
const good = encodeStrict(pointDecoder.form(point))
const reencode = (patch: Record<string, unknown>) =>
  dagCbor.encode({ ...(dagCbor.decode(good) as object), ...patch })
const reasonOf = (bytes: Uint8Array): string => {
  try {
    decodeStrict(bytes, pointDecoder)
  } catch (error) {
    return (error as Error).message
  }
  return 'decoded'
}

describe('decodeStrict', () => {
  it('round-trips a value, and its bytes are what plain DAG-CBOR writes', () => {
    expect(decodeStrict(good, pointDecoder)).toEqual(point)
    expect(cidOf(good, 0x71).toString()).toBe(
      cidOf(dagCbor.encode(pointDecoder.form(point)), 0x71).toString(),
    )
  })

  it('turns bytes that are not DAG-CBOR, misshapen or not canonical into the caller error', () => {
    expect(reasonOf(new Uint8Array([0xff]))).toMatch(/^not valid DAG-CBOR \(/)
    expect(reasonOf(new Uint8Array([...good, 0]))).toMatch(/^not valid DAG-CBOR \(/)
    expect(reasonOf(reencode({ extra: 1 }))).toBe("point has an unknown key 'extra'")
    expect(reasonOf(reencode({ at: [1, 11] }))).toBe('at[1] must be an integer from -10 to 10')
    expect(reasonOf(reencode({ at: [1] }))).toBe('at must hold 2 numbers')
    expect(reasonOf(reencode({ tags: { a: 1 } }))).toBe('tags.a must be a boolean')
    expect(reasonOf(reencode({ tags: new Uint8Array(2) }))).toBe('tags must be a map')
    // a float where an integer belongs decodes to the same number but is not canonical
    const hex = Buffer.from(good).toString('hex')
    const float = Buffer.from(hex.replace('8201', '82fb3ff0000000000000'), 'hex')
    expect(reasonOf(float)).toBe('it is not in canonical DAG-CBOR form')
    expect(() => decodeStrict(float, pointDecoder)).toThrow(
      expect.objectContaining({ code: 'ERR_TEST_CORRUPT' }),
    )
  })

  it('lets check refuse first and lets other errors of read through', () => {
    expect(reasonOf(reencode({ kind: 'line' }))).toBe('not a point')
    const failing: StrictDecoder<never> = {
      ...pointDecoder,
      read: () => {
        throw new TypeError('a bug')
      },
    } as StrictDecoder<never>
    expect(() => decodeStrict(good, failing)).toThrow(TypeError)
  })
})

describe('shape', () => {
  it('reads each kind of value and names the path when it is wrong', () => {
    const link = cidOf(new Uint8Array([1]))
    expect(shape.count(3, 'n')).toBe(3)
    expect(() => shape.count(-1, 'n')).toThrow('n must be a non-negative integer')
    expect(() => shape.count(1.5, 'n')).toThrow('n must be a non-negative integer')
    expect(shape.uint64(2n ** 64n - 1n, 'u')).toBe(2n ** 64n - 1n)
    expect(shape.uint64(7, 'u')).toBe(7n)
    expect(() => shape.uint64(2n ** 64n, 'u')).toThrow('u must be a uint64')
    expect(shape.link(link, 'l').equals(link)).toBe(true)
    expect(() => shape.link('bafy', 'l')).toThrow('l must be a CID link')
    expect(() => shape.map(link, 'm', [])).toThrow('m must be a map')
    expect(() => shape.map([], 'm', [])).toThrow('m must be a map')
    expect(() => shape.map({}, 'm', ['k'])).toThrow("m is missing 'k'")
    expect(shape.map({ k: 1, o: 2 }, 'm', ['k'], ['o'])).toEqual({ k: 1, o: 2 })
    expect(shape.oneOf('l2', 'metric', ['l2', 'ip'])).toBe('l2')
    expect(() => shape.oneOf('x', 'metric', ['l2', 'ip'])).toThrow('metric must be one of l2, ip')
    expect(() => shape.bytes(new Uint8Array(3), 'b', 4)).toThrow('b must be 4 bytes')
    expect(shape.nullable(null, (v) => shape.string(v, 's'))).toBe(null)
    expect(() => shape.list({}, 'xs', shape.string)).toThrow('xs must be a list')
    expect(() => shape.string(1, 's')).toThrow(
      expect.objectContaining({ code: 'ERR_CAS_OBJECT_SHAPE', reason: 's must be a string' }),
    )
  })
})
