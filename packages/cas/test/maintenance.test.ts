/**
 * What GC needs from a store (design/0008): objects listed with size and mtime, deleted
 * only while still old, a dedup hit freshening an old object, and writers' leftovers found
 * and removed. On memory, a folder and MinIO.
 */
import { mkdir, mkdtemp, rm, utimes, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CreateMultipartUploadCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { adminClient, freshBucket, minioEndpoint } from '@dreamdb/cas-tests'
import { afterAll, describe, expect, it } from 'vitest'
import { MemoryBackend } from '../src/backends/memory.js'
import { ContentStore } from '../src/content-store.js'
import { toHex } from '../src/digest.js'
import type { Store } from '../src/interface.js'
import { objectKey } from '../src/layout.js'
import { openStore } from '../src/open.js'

const encode = (text: string) => new TextEncoder().encode(text)
const keyOf = (cid: { multihash: { digest: Uint8Array } }): string => objectKey(toHex(cid.multihash.digest))

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of items) out.push(item)
  return out
}

interface Harness {
  store: Store
  /** Make an object look `ms` old; `false` where the backend cannot (S3). */
  age(cid: { multihash: { digest: Uint8Array } }, ms: number): Promise<boolean>
  /** Leave leftovers of a dead writer behind; `false` where a backend never has any (memory). */
  leave(): Promise<boolean>
  cleanup(): Promise<void>
}

function suite(name: string, open: () => Promise<Harness | undefined>) {
  describe(`store maintenance: ${name}`, () => {
    it('lists objects with size and mtime, deletes only old ones, and a put freshens', async () => {
      const h = await open()
      if (h === undefined) return
      try {
        const before = Date.now() - 5_000
        const a = await h.store.put(encode('object a'))
        const b = await h.store.put(encode('object b'))
        const listed = await collect(h.store.list())
        expect(listed.map((o) => o.cid.toString()).sort()).toEqual([a, b].map((c) => c.toString()).sort())
        for (const o of listed) {
          expect(o.size).toBe(8)
          expect(o.mtime).toBeGreaterThan(before)
        }
        // Both fresh: nothing is deleted.
        const cutoff = Date.now() - 60_000
        const kept = await collect(h.store.deleteObjects([a, b], { modifiedBefore: cutoff }))
        expect(kept.map((r) => r.skipped)).toEqual(['fresh', 'fresh'])
        if (await h.age(a, 3_600_000)) {
          await h.age(b, 3_600_000)
          // A put of b's bytes (a dedup hit) freshens it; a stays old and goes.
          await h.store.put(encode('object b'))
          const results = await collect(h.store.deleteObjects([a, b], { modifiedBefore: cutoff }))
          expect(results.map((r) => [r.deleted, r.skipped])).toEqual([
            [true, undefined],
            [false, 'fresh'],
          ])
          expect(await h.store.has(a)).toBe(false)
          expect(new TextDecoder().decode(await h.store.get(b))).toBe('object b')
          // `has` with `freshen` (a commit's check of an object it did not write) does the same;
          // a plain `has` moves nothing.
          await h.age(b, 3_600_000)
          expect(await h.store.has(b)).toBe(true)
          expect((await collect(h.store.list()))[0]!.mtime).toBeLessThan(cutoff)
          expect(await h.store.has(b, { freshen: true })).toBe(true)
          expect(await h.store.has(a, { freshen: true })).toBe(false)
          expect((await collect(h.store.list()))[0]!.mtime).toBeGreaterThan(cutoff)
        }
        const forced = await collect(h.store.deleteObjects([a, b]))
        expect(forced.at(-1)?.deleted).toBe(true)
        expect(await collect(h.store.list())).toEqual([])
        const again = await collect(h.store.deleteObjects([b]))
        // S3's DeleteObjects reports a missing key as deleted.
        expect(again[0]?.deleted === true || again[0]?.skipped === 'missing').toBe(true)
      } finally {
        await h.cleanup()
      }
    })

    it('finds and removes leftovers of dead writers, never objects or refs', async () => {
      const h = await open()
      if (h === undefined) return
      try {
        const cid = await h.store.put(encode('kept'))
        await h.store.createRef('main', encode('value'))
        if (!(await h.leave())) return
        const leftovers = await collect(h.store.listLeftovers())
        expect(leftovers.length).toBeGreaterThan(0)
        // Too young to remove.
        for (const l of leftovers)
          expect(await h.store.deleteLeftover(l.id, { modifiedBefore: Date.now() - 3_600_000 })).toBe(false)
        for (const l of leftovers) expect(await h.store.deleteLeftover(l.id)).toBe(true)
        expect(await collect(h.store.listLeftovers())).toEqual([])
        expect(await h.store.has(cid)).toBe(true)
        expect((await h.store.readRef('main'))?.value).toEqual(encode('value'))
        // Ids that are not leftovers are refused.
        expect(await h.store.deleteLeftover(keyOf(cid))).toBe(false)
        expect(await h.store.deleteLeftover('refs/main.ref')).toBe(false)
        expect(await h.store.has(cid)).toBe(true)
      } finally {
        await h.cleanup()
      }
    })
  })
}

suite('memory', async () => {
  const backend = new MemoryBackend('')
  return {
    store: new ContentStore(backend),
    async age(cid, ms) {
      backend.setModifiedForTesting(keyOf(cid), Date.now() - ms)
      return true
    },
    async leave() {
      expect(await collect(new ContentStore(backend).listLeftovers())).toEqual([])
      return false
    },
    cleanup: async () => {},
  }
})

suite('fs', async () => {
  const root = await mkdtemp(join(tmpdir(), 'dreamdb-maint-'))
  return {
    store: await openStore(root),
    async age(cid, ms) {
      const t = new Date(Date.now() - ms)
      await utimes(join(root, ...keyOf(cid).split('/')), t, t)
      return true
    },
    async leave() {
      await mkdir(join(root, 'tmp'), { recursive: true })
      await writeFile(join(root, 'tmp', '4242-host-deadbeef'), 'half a staged object')
      await writeFile(join(root, 'refs', 'main.ref.tmp-0123456789abcdef'), 'half a ref body')
      await writeFile(join(root, 'refs', 'main.ref.lock.tmp-0123456789abcdef'), '{}')
      return true
    },
    cleanup: () => rm(root, { recursive: true, force: true }),
  }
})

const endpoint = minioEndpoint()
const clients: { destroy(): void }[] = []
afterAll(() => {
  for (const c of clients) c.destroy()
})
suite('s3 (MinIO)', async () => {
  if (endpoint === undefined) return undefined
  const bucket = await freshBucket(endpoint)
  const admin = adminClient(endpoint)
  clients.push(admin)
  return {
    store: await openStore(`${endpoint}/${bucket}`),
    // MinIO's LastModified cannot be set back.
    age: async () => false,
    async leave() {
      await admin.send(new PutObjectCommand({ Bucket: bucket, Key: 'tmp/dead-staging', Body: 'x' }))
      await admin.send(new PutObjectCommand({ Bucket: bucket, Key: '_probe/dead-probe', Body: 'y' }))
      await admin.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: 'tmp/dead-upload' }))
      return true
    },
    cleanup: async () => {},
  }
})

describe('store maintenance: s3 freshen', () => {
  it('a put that finds an old object copies it onto itself, moving LastModified', async () => {
    if (endpoint === undefined) return
    const bucket = await freshBucket(endpoint)
    const store = await openStore(`${endpoint}/${bucket}`)
    const previous = process.env.DREAMDB_TEST_FRESHEN_AFTER_MS
    try {
      const small = await store.put(encode('small object'))
      const large = await store.put(new Uint8Array(2 << 20).fill(7))
      const [first] = await collect(store.list())
      await new Promise((r) => setTimeout(r, 1100))
      // Not old enough (10 minutes): nothing moves.
      await store.put(encode('small object'))
      const unchanged = await collect(store.list())
      expect(unchanged.find((o) => o.cid.equals(first!.cid))?.mtime).toBe(first!.mtime)
      process.env.DREAMDB_TEST_FRESHEN_AFTER_MS = '0'
      const before = Object.fromEntries((await collect(store.list())).map((o) => [o.cid.toString(), o.mtime]))
      await store.put(encode('small object'))
      await store.put(new Uint8Array(2 << 20).fill(7))
      const after = Object.fromEntries((await collect(store.list())).map((o) => [o.cid.toString(), o.mtime]))
      for (const cid of [small, large]) {
        expect(after[cid.toString()]).toBeGreaterThan(before[cid.toString()]!)
      }
      expect(await store.get(small)).toEqual(encode('small object'))
      // `has` with `freshen` (a commit's check, design/0008) copies the same way; a plain `has` does not.
      await new Promise((r) => setTimeout(r, 1100))
      expect(await store.has(small)).toBe(true)
      const plain = Object.fromEntries((await collect(store.list())).map((o) => [o.cid.toString(), o.mtime]))
      expect(plain[small.toString()]).toBe(after[small.toString()])
      expect(await store.has(small, { freshen: true })).toBe(true)
      const checked = Object.fromEntries(
        (await collect(store.list())).map((o) => [o.cid.toString(), o.mtime]),
      )
      expect(checked[small.toString()]).toBeGreaterThan(after[small.toString()]!)
    } finally {
      if (previous === undefined) delete process.env.DREAMDB_TEST_FRESHEN_AFTER_MS
      else process.env.DREAMDB_TEST_FRESHEN_AFTER_MS = previous
      await store.close()
    }
  })
})

if (endpoint === undefined) describe.skip('store maintenance: s3 (MinIO)', () => it('needs MinIO', () => {}))
