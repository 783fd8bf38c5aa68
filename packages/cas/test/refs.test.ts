import { expect, it } from 'vitest'
import type { Backend } from '../src/backends/backend.js'
import { MemoryBackend } from '../src/backends/memory.js'
import { ContentStore } from '../src/content-store.js'

const encode = (text: string): Uint8Array => new TextEncoder().encode(text)

/** A memory backend that counts the ref reads and writes the store sends it. */
function counted(): { store: ContentStore; calls: { readBlob: number; writeBlob: number } } {
  const calls = { readBlob: 0, writeBlob: 0 }
  const backend = new MemoryBackend('')
  const spy = new Proxy(backend, {
    get(target, key, receiver) {
      const value = Reflect.get(target, key, receiver)
      if (typeof value !== 'function') return value
      if (key === 'readBlob' || key === 'writeBlob') {
        return (...args: unknown[]) => {
          calls[key]++
          return value.apply(target, args)
        }
      }
      return value.bind(target)
    },
  }) as Backend
  return { store: new ContentStore(spy), calls }
}

it('updateRef given the entry the caller read writes without reading the ref first', async () => {
  const { store, calls } = counted()
  const created = await store.createRef('branches/main', encode('1'))
  calls.readBlob = 0
  calls.writeBlob = 0
  const updated = await store.updateRef('branches/main', encode('2'), created)
  expect(updated.generation).toBe(2)
  expect(calls).toEqual({ readBlob: 0, writeBlob: 1 })
  // Given only the version, the store reads the ref for its generation first.
  await store.updateRef('branches/main', encode('3'), updated.version)
  expect(calls).toEqual({ readBlob: 1, writeBlob: 2 })
})

it('updateRef refuses an expected entry without a usable generation', async () => {
  const { store } = counted()
  const created = await store.createRef('r', encode('1'))
  await expect(
    store.updateRef('r', encode('2'), { version: created.version, generation: 0 }),
  ).rejects.toThrow(TypeError)
})
