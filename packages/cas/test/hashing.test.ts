import { createHash } from 'node:crypto'
import { expect, it } from 'vitest'
import { HashingSink } from '../src/hashing.js'

it('a retried read (buffer asked for again) hashes only the bytes of the last attempt', () => {
  const sink = new HashingSink()
  const first = sink.buffer(8)
  first.set([9, 9, 9, 9], 0)
  sink.wrote(4) // the first attempt stalled here
  const second = sink.buffer(8)
  second.set([1, 2, 3, 4, 5, 6, 7, 8])
  sink.wrote(8)
  const { bytes, digest } = sink.finish()
  expect([...bytes]).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
  expect(Buffer.from(digest).toString('hex')).toBe(
    createHash('sha256')
      .update(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]))
      .digest('hex'),
  )
})
