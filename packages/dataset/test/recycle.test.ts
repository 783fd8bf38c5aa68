/**
 * `recycleBuffers`: object buffers of consumed windows go back to a bounded pool and the next
 * reads fill them. What must hold: the same records as without it; the pool stays bounded and
 * its buffers are filled again in place (so a batch kept past the next shows other records,
 * as documented); recycled buffers are still verified; a loop broken off or aborted gives its
 * buffers back; and without the option every batch stays valid.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BufferPool, openStore, type Store } from '@dreamdb/cas'
import { freshBucket, minioEndpoint } from '@dreamdb/cas-tests'
import type { RecordBatch } from 'apache-arrow'
import { afterAll, describe, expect, it } from 'vitest'
import { Dataset } from '../src/index.js'

const DIM = 256
// 1 024 records x 256-d float32: 1 MiB embedding objects, read on the read threads from a
// folder; one bucket per window, one window fetched ahead.
const BUCKET = 1024
const WINDOW = { shuffleWindow: BUCKET, prefetch: 1 }
const RECORDS = 4 * BUCKET

const dirs: string[] = []
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true })
})

/** One corpus per kind, shared by the tests (the integrity test, last, damages the folder's). */
const corpora = new Map<string, ReturnType<typeof create>>()
function corpus(kind: 'folder' | 'memory' | 's3') {
  if (!corpora.has(kind)) corpora.set(kind, create(kind))
  return corpora.get(kind)!
}

const endpoint = minioEndpoint()

async function create(kind: 'folder' | 'memory' | 's3') {
  let store: Store
  let dir: string | undefined
  if (kind === 'folder') {
    dir = await mkdtemp(join(tmpdir(), 'dreamdb-recycle-'))
    dirs.push(dir)
    store = await openStore(dir)
  } else if (kind === 's3') store = await openStore(`${endpoint}/${await freshBucket(endpoint!)}`)
  else store = await openStore('memory://')
  const ds = await Dataset.create('vectors', {
    backend: store,
    schema: {
      fields: [
        { name: 'embedding', family: 'embedding', dim: DIM },
        { name: 'label', family: 'scalar', kind: 'categorical' },
      ],
    },
  })
  const records = Array.from({ length: RECORDS }, (_, id) => {
    const embedding = new Float32Array(DIM)
    embedding[0] = id
    embedding[1] = id % 7
    return { embedding, label: `class-${id % 3}` }
  })
  await ds.appendMany(records, { bucketRecords: BUCKET })
  return { ds, store, dir }
}

/** The record ids of a batch (embedding component 0), copied out. */
const ids = (batch: RecordBatch): number[] => {
  const values = batch.getChild('embedding')!.data[0]!.children[0]!.values as Float32Array
  return Array.from({ length: batch.numRows }, (_, i) => values[i * DIM]!)
}
const range = (n: number) => Array.from({ length: n }, (_, i) => i)
/** Lets the pool's give-backs (after each window's reads settle) run. */
const settle = () => new Promise((resolve) => setImmediate(resolve))

describe('iterArrowBatches({ recycleBuffers })', { timeout: 20_000 }, () => {
  for (const kind of ['folder', 'memory', 's3'] as const) {
    it.runIf(kind !== 's3' || endpoint !== undefined)(
      `${kind}: same records; the pool is bounded and its buffers are filled again in place`,
      async () => {
        const { ds } = await corpus(kind)
        const pool = new BufferPool({ maxBytes: 3 << 20 })
        const seen: number[] = []
        const kept: { batch: RecordBatch; ids: number[] }[] = []
        const buffers = new Set<ArrayBufferLike>()
        for await (const batch of ds.iterArrowBatches({ batchSize: 512, recycleBuffers: pool, ...WINDOW })) {
          seen.push(...ids(batch))
          kept.push({ batch, ids: ids(batch) })
          const values = batch.getChild('embedding')!.data[0]!.children[0]!.values as Float32Array
          expect(values.buffer).toBeInstanceOf(SharedArrayBuffer)
          buffers.add(values.buffer)
          expect(pool.bytes).toBeLessThanOrEqual(3 << 20)
        }
        expect(seen).toEqual(range(RECORDS))
        // Four windows' embeddings in fewer buffers: later reads filled given-back ones in place.
        expect(buffers.size).toBeLessThan(RECORDS / BUCKET)
        // So a batch kept past the next may no longer hold its own records (the documented contract).
        expect(kept.some(({ batch, ids: before }) => ids(batch).join() !== before.join())).toBe(true)
        if (kind !== 's3') {
          // Shuffled: windows permuted in place in recycled buffers (on a read thread where
          // there is one); every record once, in the very order of a pass without recycling.
          const order = async (recycleBuffers: BufferPool | undefined) => {
            const out: number[] = []
            for await (const batch of ds.iterArrowBatches({
              batchSize: 512,
              ...(recycleBuffers ? { recycleBuffers } : {}),
              shuffleSeed: 7,
              ...WINDOW,
              // Two buckets a window: rows also move from one bucket's buffer to the other's.
              shuffleWindow: 2 * BUCKET,
            }))
              out.push(...ids(batch))
            return out
          }
          const shuffled = await order(pool)
          expect(shuffled).toEqual(await order(undefined))
          expect(shuffled).not.toEqual(range(RECORDS))
          expect(shuffled.sort((a, b) => a - b)).toEqual(range(RECORDS))
        }
        await settle()
        expect(pool.count).toBeGreaterThan(0)
        expect(pool.bytes).toBeLessThanOrEqual(3 << 20)
      },
    )
  }

  it('a batch spanning windows keeps them until it is built (their buffers are not refilled under it)', async () => {
    // Batches of 1.5 windows: each second batch starts in one window and ends in the next.
    for (const kind of ['folder', 'memory'] as const) {
      const { ds } = await corpus(kind)
      const seen: number[] = []
      for await (const batch of ds.iterArrowBatches({ batchSize: 1536, recycleBuffers: true, ...WINDOW }))
        seen.push(...ids(batch))
      expect(seen).toEqual(range(RECORDS))
    }
  })

  it('without it, every batch stays valid after the loop', async () => {
    const { ds } = await corpus('memory')
    const batches: RecordBatch[] = []
    for await (const batch of ds.iterArrowBatches({ batchSize: 512 })) batches.push(batch)
    expect(batches.flatMap(ids)).toEqual(range(RECORDS))
  })

  it('a loop broken off or aborted gives its windows back to the pool', async () => {
    const { ds } = await corpus('folder')
    for (const how of ['break', 'abort'] as const) {
      const pool = new BufferPool()
      const controller = new AbortController()
      const pass = async () => {
        for await (const _ of ds.iterArrowBatches({
          batchSize: 256,
          recycleBuffers: pool,
          ...WINDOW,
          signal: controller.signal,
        })) {
          if (how === 'break') break
          controller.abort()
        }
      }
      if (how === 'abort') await expect(pass()).rejects.toThrow()
      else await pass()
      // The first window and those prefetched are all read, then all given back.
      for (let i = 0; i < 20 && pool.count < 1; i++) await settle()
      expect(pool.count).toBeGreaterThan(0)
    }
  })

  it('recycleBuffers: true: one pool for the process, so the next epoch fills the buffers of the last', async () => {
    const { ds } = await corpus('folder')
    // A batch of a whole bucket is a view of the buffer its object was read into.
    const bufferOf = (batch: RecordBatch) =>
      (batch.getChild('embedding')!.data[0]!.children[0]!.values as Float32Array).buffer
    const seen = new Set<ArrayBufferLike>()
    for await (const batch of ds.iterArrowBatches({ batchSize: BUCKET, recycleBuffers: true, ...WINDOW }))
      seen.add(bufferOf(batch))
    await settle()
    let reused = 0
    for await (const batch of ds.iterArrowBatches({ batchSize: BUCKET, recycleBuffers: true, ...WINDOW }))
      if (seen.has(bufferOf(batch))) reused++
    expect(reused).toBeGreaterThan(0)
  })

  // Last: it damages the shared folder corpus.
  it('recycled buffers are verified: a damaged object is refused on a pass that reuses them', async () => {
    const { ds, dir } = await corpus('folder')
    const pool = new BufferPool()
    for await (const _ of ds.iterArrowBatches({ batchSize: 1024, recycleBuffers: pool, ...WINDOW })) {
    }
    await settle()
    expect(pool.count).toBeGreaterThan(0)
    let bucketCid: string | undefined
    for await (const { bucket } of ds.repository.buckets(ds.manifest))
      bucketCid ??= bucket.fields.embedding!.cid.toString()
    const { CID } = await import('multiformats/cid')
    const hex = Buffer.from(CID.parse(bucketCid!).multihash.digest).toString('hex')
    const path = join(dir!, 'objects', 'sha2-256', hex.slice(0, 2), hex)
    const bytes = await readFile(path)
    bytes[bytes.length - 1]! ^= 0xff
    await writeFile(path, bytes)
    let lent = 0
    const take = pool.take.bind(pool)
    pool.take = (size) => {
      const buffer = take(size)
      if (buffer !== undefined) lent++
      return buffer
    }
    const pass = async () => {
      for await (const _ of ds.iterArrowBatches({ batchSize: 1024, recycleBuffers: pool, ...WINDOW })) {
      }
    }
    await expect(pass()).rejects.toMatchObject({ code: 'ERR_CAS_INTEGRITY' })
    // The damaged object (the first read) was read into a spare.
    expect(lent).toBeGreaterThan(0)
  })
})
