/**
 * A run of records of a binary field read without its fragments whole (the viewer's pages of
 * images): ranged reads across fragments, each record checked against its digest.
 */
import { createHash } from 'node:crypto'
import { openStore } from '@dreamdb/cas'
import type { Field, FieldObject } from '@dreamdb/manifest'
import { describe, expect, it } from 'vitest'
import { encodeBucket, readBinaryRange, readFragmentIndex } from '../src/buckets.js'
import { InvalidValueError } from '../src/errors.js'

const image: Field = { name: 'image', family: 'binary', media: 'image' }
const values = ['a png', '', 'a jpeg!', 'gif', 'webp..'].map((s) => Buffer.from(s))

describe('readBinaryRange', () => {
  it('reads records across fragments and refuses bytes that do not match their digest', async () => {
    const store = await openStore('memory://')
    const fields: Record<string, FieldObject> = {}
    for (const [key, bytes] of encodeBucket([image], { image: values }, 5, new Map(), { fragmentBytes: 8 }))
      fields[key] = { cid: await store.put(bytes), bytes: bytes.byteLength }
    expect(Object.keys(fields).filter((k) => k.includes('fragment-')).length).toBeGreaterThan(0)
    const bucket = {
      records: 5,
      anchorMin: 1n,
      anchorMax: 5n,
      anchorRanges: [{ start: 1n, count: 5 }],
      timeMin: 0,
      timeMax: 0,
      fields,
    }
    const index = await readFragmentIndex(store, image, bucket)
    const text = (a: Uint8Array[]) => a.map((v) => Buffer.from(v).toString())
    expect(text(await readBinaryRange(store, image, bucket, index, 0, 5))).toEqual(values.map(String))
    expect(text(await readBinaryRange(store, image, bucket, index, 1, 4))).toEqual(['', 'a jpeg!', 'gif'])
    expect(await readBinaryRange(store, image, bucket, index, 2, 2)).toEqual([])
    await expect(readBinaryRange(store, image, bucket, index, 4, 6)).rejects.toThrow(RangeError)
    // The fragment of record 2 replaced by other bytes of the same size: caught by its digest.
    const k = index.fragments?.[2] ?? 0
    const key = k === 0 ? 'image' : `image/fragment-${k}`
    const stored = await store.get(fields[key]!.cid)
    const forged = Uint8Array.from(stored, (b) => b ^ 1)
    const swapped = {
      ...bucket,
      fields: { ...fields, [key]: { cid: await store.put(forged), bytes: forged.length } },
    }
    await expect(readBinaryRange(store, image, swapped, index, 2, 3)).rejects.toMatchObject({
      code: 'ERR_CAS_INTEGRITY',
    })
  })
})

describe('encodeBucket with known digests', () => {
  const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest()
  const known = (vs: readonly Uint8Array[]) => Buffer.concat(vs.map(sha))

  it('gives the same objects as hashing the values, and takes the digests as given', async () => {
    const options = { fragmentBytes: 8 }
    const hashed = encodeBucket([image], { image: values }, 5, new Map(), options)
    const given = encodeBucket([image], { image: values }, 5, new Map(), {
      ...options,
      digests: { image: known(values) },
    })
    expect(given.map(([k]) => k)).toEqual(hashed.map(([k]) => k))
    for (const [i, [, bytes]] of given.entries())
      expect(Buffer.from(bytes)).toEqual(Buffer.from(hashed[i]![1]))
    // The digests are used, not computed again: other ones land in the index as given (a
    // record read then fails its check; a caller must give each value's own digest).
    const store = await openStore('memory://')
    const wrong = known(values)
    wrong[2 * 32]! ^= 1
    const fields: Record<string, FieldObject> = {}
    for (const [key, bytes] of encodeBucket([image], { image: values }, 5, new Map(), {
      ...options,
      digests: { image: wrong },
    }))
      fields[key] = { cid: await store.put(bytes), bytes: bytes.byteLength }
    const index = await readFragmentIndex(store, image, {
      records: 5,
      anchorMin: 1n,
      anchorMax: 5n,
      anchorRanges: [{ start: 1n, count: 5 }],
      timeMin: 0,
      timeMax: 0,
      fields,
    })
    expect(Buffer.from(index.sha256)).toEqual(wrong)
  })

  it('refuses digests that are not 32 bytes per value', () => {
    for (const digests of [new Uint8Array(4 * 32), new Uint8Array(6 * 32), 'abc']) {
      expect(() =>
        encodeBucket([image], { image: values }, 5, new Map(), {
          digests: { image: digests as Uint8Array },
        }),
      ).toThrow(InvalidValueError)
    }
  })
})
