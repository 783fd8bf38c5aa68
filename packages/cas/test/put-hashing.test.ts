import { randomFillSync } from 'node:crypto'
import { afterEach, expect, it, vi } from 'vitest'
import { MemoryBackend } from '../src/backends/memory.js'
import { ReadThreads } from '../src/backends/read-threads.js'
import { ContentStore } from '../src/content-store.js'
import { cidOf, sha256, toHex } from '../src/digest.js'
import { POOL_HASH_MIN_BYTES, putDigest } from '../src/hashing.js'

afterEach(() => {
  vi.restoreAllMocks()
})

/** `size` random bytes in a shared buffer, from byte `offset` (as an ingest's encoded fragments come). */
function sharedBytes(size: number, offset = 0): Uint8Array {
  const bytes = new Uint8Array(new SharedArrayBuffer(offset + size + 64), offset, size)
  // randomFillSync refuses shared memory: fill a plain copy and set it.
  bytes.set(randomFillSync(new Uint8Array(size)))
  return bytes
}

it('a large shared put is hashed on the read threads, to the same CID, around the threshold and from an offset', async () => {
  const pooled = vi.spyOn(ReadThreads.prototype, 'hash')
  const store = new ContentStore(new MemoryBackend(''))
  for (const size of [POOL_HASH_MIN_BYTES - 1, POOL_HASH_MIN_BYTES, POOL_HASH_MIN_BYTES + 1]) {
    for (const offset of [0, 2008]) {
      const bytes = sharedBytes(size, offset)
      const expected = cidOf(bytes.slice())
      const before = pooled.mock.calls.length
      expect((await store.put(bytes)).toString()).toBe(expected.toString())
      expect(pooled.mock.calls.length - before).toBe(size >= POOL_HASH_MIN_BYTES ? 1 : 0)
      expect(toHex(await putDigest(bytes))).toBe(toHex(sha256(bytes.slice())))
    }
  }
})

it('a plain ArrayBuffer is hashed here: never detached, never copied to a worker', async () => {
  const pooled = vi.spyOn(ReadThreads.prototype, 'hash')
  const store = new ContentStore(new MemoryBackend(''))
  const bytes = randomFillSync(new Uint8Array(POOL_HASH_MIN_BYTES * 2))
  const copy = bytes.slice()
  const cid = await store.put(bytes)
  expect(pooled).not.toHaveBeenCalled()
  expect(bytes.byteLength).toBe(copy.byteLength)
  expect(Buffer.from(bytes).equals(copy)).toBe(true)
  expect(cid.toString()).toBe(cidOf(copy).toString())
})

it('a shared buffer hashed on a read thread is left as it was (in place: not detached, not moved)', async () => {
  const store = new ContentStore(new MemoryBackend(''))
  const bytes = sharedBytes(POOL_HASH_MIN_BYTES * 4, 16)
  const copy = bytes.slice()
  const cid = await store.put(bytes)
  expect(bytes.byteLength).toBe(copy.byteLength)
  expect(Buffer.from(bytes).equals(copy)).toBe(true)
  expect(cid.toString()).toBe(cidOf(copy).toString())
  expect(Buffer.from(await store.get(cid)).equals(copy)).toBe(true)
})

it('an abort while a read thread hashes a put rejects with the abort and writes nothing', async () => {
  const backend = new MemoryBackend('')
  const store = new ContentStore(backend)
  // Large enough that the hash (tens of ms) is still running when the abort comes.
  const bytes = sharedBytes(64 << 20)
  const cid = cidOf(bytes.slice())
  const writes = vi.spyOn(backend, 'writeObjectIfAbsent')
  const controller = new AbortController()
  const reason = new Error('stop')
  const put = store.put(bytes, { signal: controller.signal })
  setImmediate(() => controller.abort(reason))
  // Compared as values, not as the promise: a failure must not print 64 MiB of arguments.
  expect(
    await put.then(
      () => 'stored',
      (error: unknown) => error,
    ),
  ).toBe(reason)
  // Let the thread's late answer come and go: still nothing written.
  await new Promise((resolve) => setTimeout(resolve, 200))
  expect(writes.mock.calls.length).toBe(0)
  expect(await store.has(cid)).toBe(false)
})
