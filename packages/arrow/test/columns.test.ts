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

describe('binary fragments of contiguous values', () => {
  const image: Field[] = [{ name: 'image', family: 'binary', media: 'image' }]
  // Values back to back in one buffer, as a decoded Arrow binary column hands them over.
  const source = Uint8Array.from({ length: 40 }, (_, i) => (i * 7) % 256)
  const cuts = [0, 5, 5, 17, 30, 40]
  const views = cuts.slice(1).map((end, i) => source.subarray(cuts[i], end))
  const copies = views.map((v) => v.slice())

  it('encode to the same objects as copies of the values, the fragments viewing the source', () => {
    for (const fragmentBytes of [64, 16]) {
      const viewed = encodeBucket(image, { image: views }, views.length, new Map(), { fragmentBytes })
      const copied = encodeBucket(image, { image: copies }, copies.length, new Map(), { fragmentBytes })
      expect(viewed.map(([key, bytes]) => [key, [...bytes]])).toEqual(
        copied.map(([key, bytes]) => [key, [...bytes]]),
      )
      // The fragments (the main object and parts fragment-k) are views of the source buffer.
      const fragments = viewed.filter(([key]) => !key.endsWith('index'))
      expect(fragments.length).toBe(fragmentBytes === 64 ? 1 : 4)
      for (const [, bytes] of fragments) expect(bytes.buffer).toBe(source.buffer)
    }
  })

  it('copies values that are not back to back, and reads every record back', async () => {
    // Two views out of order: not contiguous, so the fragment is a copy.
    const shuffled = [views[1]!, views[0]!, views[2]!]
    const encoded = encodeBucket(image, { image: shuffled }, 3, new Map(), {})
    const main = encoded.find(([key]) => key === 'image')![1]
    expect(main.buffer).not.toBe(source.buffer)
    const store = await openStore('memory://')
    const objects = await putEncodedBucket(store, encoded)
    const bucket: Bucket = {
      records: 3,
      anchorRanges: [{ start: 1n, count: 3 }],
      anchorMin: 1n,
      anchorMax: 3n,
      timeMin: 0,
      timeMax: 0,
      fields: objects,
    }
    const read = await readBucketColumns(store, image, bucket)
    expect([0, 1, 2].map((i) => [...(read.image!.get(i) as Uint8Array)])).toEqual(shuffled.map((v) => [...v]))
  })
})
