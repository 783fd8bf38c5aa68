import { mkdir, mkdtemp, readdir, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { rejection } from '@dreamdb/cas-tests'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { Store } from '../src/index.js'
import { openStore } from '../src/open.js'

const encode = (text: string): Uint8Array => new TextEncoder().encode(text)

describe('folder backend specifics', () => {
  let root: string
  let store: Store
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'dreamdb-fs-'))
    store = await openStore(root)
  })
  afterEach(async () => {
    await store.close()
    await rm(root, { recursive: true, force: true })
  })

  it('lays objects out as objects/sha2-256/<2 hex>/<64 hex>, checkable with sha256sum', async () => {
    const cid = await store.put(encode('layout'))
    const hex = Buffer.from(cid.multihash.digest).toString('hex')
    expect(await readdir(join(root, 'objects', 'sha2-256', hex.slice(0, 2)))).toEqual([hex])
    expect(await readdir(join(root, 'tmp'))).toEqual([])
  })

  it('large objects read on read threads and on the calling thread give the same verified bytes', async () => {
    const { randomBytes } = await import('node:crypto')
    const objects = Array.from({ length: 8 }, (_, i) => randomBytes((1 << 20) + i * 4099))
    const cids = await Promise.all(objects.map((bytes) => store.put(bytes)))
    const threads = await openStore(root, { readThreads: true })
    const inline = await openStore(root, { readThreads: false })
    for (const reader of [threads, inline]) {
      const read = await Promise.all(cids.map((cid) => reader.get(cid)))
      read.forEach((bytes, i) => {
        expect(Buffer.from(bytes).equals(objects[i]!)).toBe(true)
      })
    }
    // Corruption is caught on either path.
    const hex = Buffer.from(cids[3]!.multihash.digest).toString('hex')
    const evil = Buffer.from(objects[3]!)
    evil[12345] = evil[12345]! ^ 1
    await writeFile(join(root, 'objects', 'sha2-256', hex.slice(0, 2), hex), evil)
    for (const reader of [threads, inline]) {
      expect((await rejection(reader.get(cids[3]!))).code).toBe('ERR_CAS_INTEGRITY')
    }
  })

  it('an object over 32 MiB (read chunk by chunk on its thread) comes back whole, and corrupted fails', async () => {
    const { randomBytes } = await import('node:crypto')
    const bytes = randomBytes((33 << 20) + 5)
    const cid = await store.put(bytes)
    const threads = await openStore(root, { readThreads: true })
    expect(Buffer.from(await threads.get(cid)).equals(bytes)).toBe(true)
    const hex = Buffer.from(cid.multihash.digest).toString('hex')
    bytes[(20 << 20) + 7] = bytes[(20 << 20) + 7]! ^ 0x80
    await writeFile(join(root, 'objects', 'sha2-256', hex.slice(0, 2), hex), bytes)
    expect((await rejection(threads.get(cid))).code).toBe('ERR_CAS_INTEGRITY')
  })

  it('breaks a lock left by a crashed writer once it is stale', async () => {
    await mkdir(join(root, 'refs', 'branches'), { recursive: true })
    const lock = join(root, 'refs', 'branches', 'main.ref.lock')
    await writeFile(lock, 'left by a crash')
    const old = new Date(Date.now() - 120_000)
    await utimes(lock, old, old)
    const created = await store.createRef('branches/main', encode('m1'))
    expect(created.generation).toBe(1)
    expect(await readdir(join(root, 'refs', 'branches'))).toEqual(['main.ref'])
  })

  it('waits for a live lock instead of failing or overwriting', async () => {
    const created = await store.createRef('main', encode('m1'))
    const lock = join(root, 'refs', 'main.ref.lock')
    await writeFile(lock, 'held by another writer')
    setTimeout(() => void rm(lock), 200)
    const updated = await store.updateRef('main', encode('m2'), created.version)
    expect(updated.generation).toBe(2)
  })

  it('a half-written temp file from a crash is invisible to reads and listing', async () => {
    await mkdir(join(root, 'tmp'), { recursive: true })
    await writeFile(join(root, 'tmp', 'crashed-upload'), 'partial')
    expect(
      (
        await (async () => {
          const out = []
          for await (const o of store.list()) out.push(o)
          return out
        })()
      ).length,
    ).toBe(0)
  })

  it('an I/O error that is not ENOENT stays a StorageError with its cause, not "not found"', async () => {
    const file = join(root, 'not-a-folder')
    await writeFile(file, 'x')
    const broken = await openStore(file)
    const cid = await store.put(encode('anything'))
    const error = await rejection(broken.get(cid))
    expect(error.code).toBe('ERR_CAS_STORAGE')
    expect((error.cause as { code?: string }).code).toBe('ENOTDIR')
    expect(error.message).toContain(cid.toString())
    const putError = await rejection(broken.put(encode('y')))
    expect(putError.code).toBe('ERR_CAS_STORAGE')
  })

  it('an empty object file is ERR_CAS_INTEGRITY, not NOT_FOUND; an absent one is NOT_FOUND; a put heals it', async () => {
    const { randomBytes } = await import('node:crypto')
    const objectFile = (cid: { multihash: { digest: Uint8Array } }) => {
      const hex = Buffer.from(cid.multihash.digest).toString('hex')
      return join(root, 'objects', 'sha2-256', hex.slice(0, 2), hex)
    }
    // Small (verified on a dedup put) and large (read on a read thread, size-checked on a put).
    for (const bytes of [encode('the real bytes'), randomBytes((1 << 20) + 7)]) {
      const cid = await store.put(bytes)
      await writeFile(objectFile(cid), new Uint8Array(0))
      for (const readThreads of [true, false]) {
        // A fresh store: nothing it knows of the damage beforehand.
        const reader = await openStore(root, { readThreads })
        try {
          for (const read of [
            () => reader.get(cid),
            async () => {
              for await (const _ of reader.getMany([cid])) {
              }
            },
            async () => {
              for await (const _ of reader.stream(cid)) {
              }
            },
          ]) {
            const error = await rejection(read())
            expect(error.code).toBe('ERR_CAS_INTEGRITY')
            expect(error.message).toContain(cid.toString())
          }
          expect(await reader.has(cid)).toBe(true)
        } finally {
          await reader.close()
        }
      }
      const healer = await openStore(root)
      const events: unknown[] = []
      await healer.put(new Uint8Array(bytes), { onProgress: (e) => events.push(e) })
      expect(events).toMatchObject([{ type: 'dreamdb:cas:put', stored: true, repaired: true }])
      expect(Buffer.from(await healer.get(cid)).equals(Buffer.from(bytes))).toBe(true)
      await healer.close()
    }
    const absent = await store.put(encode('deleted behind the store'))
    await rm(objectFile(absent))
    expect((await rejection(store.get(absent))).code).toBe('ERR_CAS_NOT_FOUND')
    expect(await store.has(absent)).toBe(false)
  })
})
