import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore } from '@dreamdb/cas'
import type { CID } from 'multiformats/cid'
import { afterAll, describe, expect, it } from 'vitest'
import { log, Repository } from '../src/index.js'
import { counting } from './helpers/counting.js'
import { SCHEMA } from './helpers/records.js'

/** One bucket's data objects, written by the caller the way the dataset layer does. */
async function writeBucket(repo: Repository, count: number, tag: string) {
  const start = await repo.mintAnchors(count)
  const fields: Record<string, { cid: CID; bytes: number }> = {}
  for (const name of ['image', 'label']) {
    const bytes = new TextEncoder().encode(`${name} ${tag} ${start}`)
    fields[name] = { cid: await repo.store.put(bytes), bytes: bytes.byteLength }
  }
  return { records: count, anchorRanges: [{ start, count }], fields }
}

const folders: string[] = []
afterAll(async () => {
  await Promise.all(folders.map((f) => rm(f, { recursive: true, force: true })))
})

describe.each(['memory', 'folder'])('what one append costs (%s)', (backend) => {
  const open = async () => {
    if (backend === 'memory') return await openStore('memory://')
    const folder = await mkdtemp(join(tmpdir(), 'dreamdb-append-cost-'))
    folders.push(folder)
    return await openStore(folder)
  }

  it('a repository that holds the branch: its tree node, the manifest and one ref write', async () => {
    const { store, calls } = counting(await open())
    const repo = new Repository(store)
    await repo.createDataset('corpus', { schema: SCHEMA })
    for (let i = 0; i < 3; i++) {
      const bucket = await writeBucket(repo, 4, `b${i}`)
      calls.length = 0
      const written = Object.values(bucket.fields).map((f) => f.cid)
      await repo.commit('corpus', { kind: 'append', buckets: [bucket] }, { written })
      // No ref read (the repository moved the branch last), no check of objects it was
      // handed as written, no read of the timeline (its nodes are cached as written).
      expect(calls).toEqual(['put', 'put', 'updateRef'])
    }
  })

  it("objects not named as written are checked, one request each, between two reads of the GC's sweep fence", async () => {
    const { store, calls } = counting(await open())
    const repo = new Repository(store)
    await repo.createDataset('corpus', { schema: SCHEMA })
    const bucket = await writeBucket(repo, 4, 'b')
    calls.length = 0
    await repo.commit('corpus', { kind: 'append', buckets: [bucket] })
    expect(calls).toEqual(['readRef', 'has', 'has', 'readRef', 'put', 'put', 'updateRef'])
  })

  it('a fresh repository reads the branch once; one whose branch moved meanwhile starts over, lands on top, and reads first next time', async () => {
    const shared = await open()
    const counted = counting(shared)
    const a = new Repository(counted.store)
    await a.createDataset('corpus', { schema: SCHEMA })
    await a.commit('corpus', { kind: 'append', buckets: [await writeBucket(a, 2, 'a0')] })

    const { store, calls } = counting(shared)
    const b = new Repository(store)
    const bucket = await writeBucket(b, 3, 'b0')
    calls.length = 0
    const written = Object.values(bucket.fields).map((f) => f.cid)
    await b.commit('corpus', { kind: 'append', buckets: [bucket] }, { written })
    // The ref, the manifest it names and the timeline's root, then the writes.
    expect(calls).toEqual(['readRef', 'get', 'get', 'put', 'put', 'updateRef'])

    // `a` remembers the branch where it left it; `b` has moved it since. The swap against
    // the stale head is refused, and the commit starts over on the branch as it is.
    const result = await a.commit('corpus', { kind: 'append', buckets: [await writeBucket(a, 5, 'a1')] })
    expect(result.attempts).toBe(1)
    const history = await log(new Repository(shared), 'corpus')
    expect(history.map((e) => e.change)).toEqual([
      { kind: 'append', buckets: 1, records: 5 },
      { kind: 'append', buckets: 1, records: 3 },
      { kind: 'append', buckets: 1, records: 2 },
      { kind: 'create' },
    ])
    expect(history[0]!.records).toBe(10)
    expect(history[0]!.parents).toEqual([history[1]!.manifest])

    // Having met another writer, `a` reads the branch before its next commit (a read is
    // cheaper than a refused swap), until a commit of its own wins at once.
    for (const expected of [
      ['readRef', 'put', 'put', 'updateRef'],
      ['put', 'put', 'updateRef'],
    ]) {
      const next = await writeBucket(a, 1, `a${expected.length}`)
      counted.calls.length = 0
      await a.commit(
        'corpus',
        { kind: 'append', buckets: [next] },
        { written: Object.values(next.fields).map((f) => f.cid) },
      )
      expect(counted.calls).toEqual(expected)
    }
  })
})

describe('an aborted commit', () => {
  it('stops before its ref write and the branch stays where it was', async () => {
    const repo = new Repository(await openStore('memory://'))
    await repo.createDataset('corpus', { schema: SCHEMA })
    const before = await repo.readRef('corpus')
    const bucket = await writeBucket(repo, 2, 'x')
    const controller = new AbortController()
    controller.abort(new Error('stop'))
    await expect(
      repo.commit('corpus', { kind: 'append', buckets: [bucket] }, { signal: controller.signal }),
    ).rejects.toThrow('stop')
    expect((await repo.readRef('corpus'))!.version).toBe(before!.version)
    // The same change commits once the caller tries again.
    const result = await repo.commit('corpus', { kind: 'append', buckets: [bucket] })
    expect(result.attempts).toBe(1)
    expect((await repo.resolve('corpus')).manifest.stats.records).toBe(2)
  })
})

describe('what a restore costs', () => {
  it('the same at 2 buckets and at 40: its named roots checked, the manifest and one ref write; no tree node read', async () => {
    const costs: string[][] = []
    for (const buckets of [2, 40]) {
      const { store, calls } = counting(await openStore('memory://'))
      const repo = new Repository(store)
      await repo.createDataset('corpus', { schema: SCHEMA })
      for (let i = 0; i < buckets; i++)
        await repo.commit('corpus', { kind: 'append', buckets: [await writeBucket(repo, 1, `b${i}`)] })
      const past = await repo.resolve('corpus')
      await repo.commit('corpus', { kind: 'append', buckets: [await writeBucket(repo, 1, 'bad')] })
      calls.length = 0
      await repo.commit('corpus', { kind: 'restore', from: past.target.manifest, state: past.manifest })
      costs.push([...calls])
    }
    expect(costs[1]).toEqual(costs[0])
    expect(costs[0]).toEqual(['readRef', 'has', 'has', 'readRef', 'put', 'updateRef'])
  })
})
