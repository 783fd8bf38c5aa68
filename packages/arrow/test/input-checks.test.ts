import { openStore } from '@dreamdb/cas'
import type { EmbeddingField, Field } from '@dreamdb/manifest'
import { describe, expect, it } from 'vitest'
import { checkVector, encodeField } from '../src/columns.js'
import { encodeBucket, putEncodedBucket, writeLayerSegment } from '../src/index.js'

const embedding: EmbeddingField = {
  name: 'embedding',
  family: 'embedding',
  dim: 3,
  metric: 'cosine',
  algorithm: null,
  spatialIndex: null,
  compressor: null,
  rerank: false,
}

async function objectCount(store: Awaited<ReturnType<typeof openStore>>): Promise<number> {
  let n = 0
  for await (const _ of store.list()) n++
  return n
}

describe('embedding components are numbers, never coerced', () => {
  const refused: [string, unknown[], number, unknown][] = [
    ["the string '1e3'", [1, '1e3', 0], 1, '1e3'],
    ['true', [true, 0, 0], 0, true],
    ['null', [0, 0, null], 2, null],
    ['a bigint', [0, 1n, 0], 1, 1n],
    ['an object', [0, { valueOf: () => 1 }, 0], 1, undefined],
    ['undefined', [0, undefined, 1], 1, undefined],
    ['unset components', Array.from({ length: 3 }).fill(0, 0, 1), 1, undefined],
    ['a number beyond float32', [0, 1e39, 0], 1, 1e39],
    ['NaN', [0, Number.NaN, 0], 1, Number.NaN],
  ]
  it.each(refused)(
    '%s is ERR_ARROW_INVALID_VALUE naming field, record and component',
    async (_, vector, component, value) => {
      const store = await openStore('memory://')
      const values = [[1, 0, 0], vector]
      let error: unknown
      try {
        await putEncodedBucket(store, encodeBucket([embedding], { embedding: values }, 2))
      } catch (e) {
        error = e
      }
      expect(error).toMatchObject({ code: 'ERR_ARROW_INVALID_VALUE', field: 'embedding', index: 1 })
      const message = (error as Error).message
      expect(message).toContain("field 'embedding' at record 1")
      expect(message).toContain(`component ${component}`)
      if (typeof value === 'string') expect(message).toContain(JSON.stringify(value))
      if (value !== undefined) expect(Object.is((error as { value: unknown }).value, value)).toBe(true)
      expect(await objectCount(store)).toBe(0)
    },
  )

  it('typed arrays and number arrays are accepted as they were', () => {
    const f32 = new Float32Array([1, 2, 3])
    expect(checkVector(embedding, f32, 0)).toBe(f32) // no copy on the fast path
    expect(Array.from(checkVector(embedding, new Float64Array([1, 2, 3]), 0))).toEqual([1, 2, 3])
    expect(Array.from(checkVector(embedding, [1, -2.5, 3], 0))).toEqual([1, -2.5, 3])
    expect(() => checkVector(embedding, new Float32Array([1, Number.POSITIVE_INFINITY, 3]), 4)).toThrow(
      /record 4: component 1 is Infinity/,
    )
    expect(() => checkVector(embedding, new Int32Array([1, 2, 3]), 0)).toThrow(
      /expected a vector of 3 numbers/,
    )
  })
})

describe('a field this package cannot encode', () => {
  it('an unknown scalar kind is ERR_ARROW_INVALID_FIELD naming the kind and the allowed ones', async () => {
    const store = await openStore('memory://')
    const field = { name: 'prediction', family: 'scalar', kind: 'label' } as unknown as Field
    const attempt = writeLayerSegment(store, field, [1n], ['cat'])
    await expect(attempt).rejects.toMatchObject({
      code: 'ERR_ARROW_INVALID_FIELD',
      field: 'prediction',
      what: 'kind',
      value: 'label',
    })
    await expect(writeLayerSegment(store, field, [1n], ['cat'])).rejects.toThrow(
      /kind "label", which is not one of categorical, string, int, float, bool, timestamp/,
    )
    expect(await objectCount(store)).toBe(0)
  })

  it('an unknown family is ERR_ARROW_INVALID_FIELD', () => {
    const field = { name: 'x', family: 'tensor' } as unknown as Field
    expect(() => encodeField(field, [1])).toThrow(
      expect.objectContaining({ code: 'ERR_ARROW_INVALID_FIELD' }),
    )
  })

  it('an int beyond int64 is refused, not wrapped', () => {
    const field: Field = { name: 'count', family: 'scalar', kind: 'int' }
    expect(() => encodeField(field, [1n, 2n ** 63n])).toThrow(
      expect.objectContaining({ code: 'ERR_ARROW_INVALID_VALUE', index: 1, value: 2n ** 63n }),
    )
  })
})
