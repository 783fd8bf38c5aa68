import { openStore } from '@dreamdb/cas'
import { rejection } from '@dreamdb/cas-tests'
import type { Bucket, Field } from '@dreamdb/manifest'
import { describe, expect, it } from 'vitest'
import {
  anchorsOf,
  encodeBucket,
  putEncodedBucket,
  readBinaryRecord,
  readBucketColumns,
  readLayerSegment,
  writeLayerSegment,
} from '../src/index.js'

const fields: Field[] = [
  { name: 'image', family: 'binary', media: 'image' },
  {
    name: 'embedding',
    family: 'embedding',
    dim: 3,
    metric: 'cosine',
    algorithm: null,
    spatialIndex: null,
    compressor: null,
    rerank: false,
  },
  { name: 'label', family: 'scalar', kind: 'categorical' },
  { name: 'count', family: 'scalar', kind: 'int' },
  { name: 'score', family: 'scalar', kind: 'float' },
  { name: 'ok', family: 'scalar', kind: 'bool' },
  { name: 'at', family: 'scalar', kind: 'timestamp' },
  { name: 'caption', family: 'scalar', kind: 'string' },
]
const columns = {
  image: [new Uint8Array([1, 2, 3]), new Uint8Array([]), Buffer.from('a jpeg')],
  embedding: [[1, 0, 0], new Float32Array([0, 1, 0]), [0.5, 0.5, 0.25]],
  label: ['cat', 'dog', 'cat'],
  count: [1, 2n ** 40n, null],
  score: [0.5, -1, null],
  ok: [true, false, null],
  at: [new Date(1_790_000_000_000), 1_790_000_000_001, null],
  caption: ['a', null, 'c'],
}

describe('anchorsOf', () => {
  it('lists the anchors of every range in order, across a 32-bit carry and beyond 2^53', () => {
    const ranges = [
      { start: 2n ** 32n - 2n, count: 4 },
      { start: 7n, count: 1 },
      { start: 2n ** 60n + 5n, count: 2 },
    ]
    const bucket = { records: 7, anchorRanges: ranges } as unknown as Bucket
    expect([...anchorsOf(bucket)]).toEqual([
      2n ** 32n - 2n,
      2n ** 32n - 1n,
      2n ** 32n,
      2n ** 32n + 1n,
      7n,
      2n ** 60n + 5n,
      2n ** 60n + 6n,
    ])
    expect(() => anchorsOf({ records: 6, anchorRanges: ranges } as unknown as Bucket)).toThrow(
      'bucket lists 7 anchors for 6 records',
    )
  })
})

describe('bucket columns', () => {
  it('round-trips every field family as Arrow columns, reading only the fields asked for', async () => {
    const store = await openStore('memory://')
    const objects = await putEncodedBucket(store, encodeBucket(fields, columns, 3))
    expect(Object.keys(objects).sort()).toEqual([...fields.map((f) => f.name), 'image/index'].sort())
    const bucket: Bucket = {
      records: 3,
      anchorMin: 10n,
      anchorMax: 12n,
      anchorRanges: [{ start: 10n, count: 3 }],
      timeMin: 0,
      timeMax: 0,
      fields: objects,
    }
    const read = await readBucketColumns(store, fields, bucket)
    expect([...read.image!].map((b) => Buffer.from(b as Uint8Array).toString('hex'))).toEqual([
      '010203',
      '',
      Buffer.from('a jpeg').toString('hex'),
    ])
    expect([...read.embedding!].map((v) => [...(v as Iterable<number>)])).toEqual([
      [1, 0, 0],
      [0, 1, 0],
      [0.5, 0.5, 0.25],
    ])
    expect(read.label!.toArray()).toEqual(['cat', 'dog', 'cat'])
    expect([...read.count!]).toEqual([1n, 2n ** 40n, null])
    expect([...read.score!]).toEqual([0.5, -1, null])
    expect([...read.ok!]).toEqual([true, false, null])
    expect([...read.at!]).toEqual([1_790_000_000_000, 1_790_000_000_001, null])
    expect([...read.caption!]).toEqual(['a', null, 'c'])
    expect([...anchorsOf(bucket)]).toEqual([10n, 11n, 12n])

    // Projection: asking for the label never fetches the image fragment.
    let fetched: string[] = []
    const spy = new Proxy(store, {
      get(target, key) {
        const value = Reflect.get(target, key)
        if (key === 'getMany') {
          return (cids: Iterable<{ toString(): string }>, options: unknown) => {
            fetched = [...cids].map(String)
            return (value as typeof store.getMany).call(
              target,
              fetched.map((c) => [...cids].find((x) => String(x) === c)) as never,
              options as never,
            )
          }
        }
        return typeof value === 'function' ? value.bind(target) : value
      },
    })
    await readBucketColumns(spy, [fields[2]!], bucket)
    expect(fetched).toEqual([objects.label!.cid.toString()])

    // One record of a binary field: a ranged read verified against its own digest.
    expect(Buffer.from(await readBinaryRecord(store, fields[0]!, bucket, 2)).toString()).toBe('a jpeg')
  })

  it.each([
    ['embedding', [[1, 0]], 'expected dimension 3, got 2'],
    ['embedding', [[1, Number.NaN, 0]], 'component 1 is NaN'],
    ['embedding', [[1, Number.POSITIVE_INFINITY, 0]], 'component 1 is Infinity'],
    ['label', [42], 'expected a string'],
    ['count', [1.5], 'expected an integer'],
    ['ok', ['yes'], 'expected a boolean'],
    ['image', ['not bytes'], 'expected bytes'],
  ])('rejects %s = %j before writing anything', async (name, values, words) => {
    const store = await openStore('memory://')
    const field = fields.find((f) => f.name === name)!
    // Encoding validates every value; nothing reaches the store when one is refused.
    const write = async () =>
      await putEncodedBucket(store, encodeBucket([fields[2]!, field], { label: ['x'], [name]: values }, 1))
    const error = await rejection(write())
    expect(error.code).toBe('ERR_ARROW_INVALID_VALUE')
    expect(error.message).toContain(`'${name}'`)
    expect(error.message).toContain(words)
    const stored = []
    for await (const o of store.list()) stored.push(o)
    expect(stored).toEqual([])
  })

  it('layer segments carry their anchors', async () => {
    const store = await openStore('memory://')
    const layer: Field = { name: 'prediction', family: 'scalar', kind: 'categorical' }
    const segment = await writeLayerSegment(store, layer, [12n, 10n], ['dog', 'cat'])
    expect(segment).toMatchObject({ records: 2, anchorMin: 10n, anchorMax: 12n })
    const read = await readLayerSegment(store, layer, {
      ...segment,
      anchorRanges: null,
      timeMin: 0,
      timeMax: 0,
    })
    expect([...read.anchors]).toEqual([12n, 10n])
    expect(read.values.toArray()).toEqual(['dog', 'cat'])
  })
})
