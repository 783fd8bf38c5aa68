/**
 * Bounded, checked walks and isolation: crafted timelines (a node listed many times, a
 * child shared by two parents, summaries that overstate, levels out of order, nesting past
 * the limit, anchor ranges that disagree with a bucket's records) end in a typed error
 * quickly instead of hanging, and a damaged ref or manifest fails only what needs it.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { cidOf, openStore, type Store } from '@dreamdb/cas'
import type { CID } from 'multiformats/cid'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { DAG_CBOR, encodeManifest, encodeRefTarget, encodeTreeNode } from '../src/codec.js'
import {
  type Bucket,
  inspect,
  log,
  type Manifest,
  Repository,
  type TreeChild,
  type TreeNode,
} from '../src/index.js'
import { summarize } from '../src/tree.js'
import { appendRecords, SCHEMA } from './helpers/records.js'

async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise
  } catch (error) {
    return error as Error & Record<string, unknown>
  }
  throw new Error('expected a rejection')
}

async function drain<T>(source: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of source) out.push(item)
  return out
}

function bucket(id: number, records = 2): Bucket {
  return {
    records,
    anchorMin: BigInt(id * 100),
    anchorMax: BigInt(id * 100 + records - 1),
    anchorRanges: [{ start: BigInt(id * 100), count: records }],
    timeMin: 1000 + id,
    timeMax: 1000 + id,
    fields: {
      image: { cid: cidOf(new TextEncoder().encode(`i${id}`)), bytes: 10 },
      label: { cid: cidOf(new TextEncoder().encode(`l${id}`)), bytes: 5 },
    },
  }
}

async function putNode(store: Store, node: TreeNode): Promise<TreeChild> {
  const cid = await store.put(encodeTreeNode(node), { codec: DAG_CBOR })
  return summarize(cid, node)
}

/** A branch `name` whose manifest names `root` and says `stats` (default: the root's summary). */
async function craftRef(
  repo: Repository,
  name: string,
  root: TreeChild,
  stats?: { records: number; buckets: number },
): Promise<CID> {
  const manifest: Manifest = {
    schema: { fields: SCHEMA.fields },
    timeline: root.node,
    layers: [],
    parents: [],
    message: 'crafted',
    timestamp: 1,
    change: { kind: 'create' },
    stats: { records: stats?.records ?? root.records, buckets: stats?.buckets ?? root.buckets, bytes: {} },
  }
  const cid = await repo.store.put(encodeManifest(manifest), { codec: DAG_CBOR })
  await repo.store.createRef(name, encodeRefTarget({ kind: 'branch', manifest: cid, timeline: root.node }))
  return cid
}

/** Every reader of a timeline: walks, leaves, inspect, and log/inspect's ref listing. */
async function readers(repo: Repository, name: string) {
  const { manifest } = await repo.resolve(name)
  return {
    buckets: () => drain(repo.buckets(manifest)),
    leaves: async () => {
      for await (const { leaf } of repo.leaves(manifest)) await repo.leafBuckets(leaf)
    },
    inspect: () => inspect(repo, name),
  }
}

describe('checked walks of crafted timelines', () => {
  let repo: Repository
  beforeEach(async () => {
    repo = new Repository(await openStore('memory://'))
  })

  it('9 nodes, each listing the next one 32 times: refused as corrupt at once, no hang', async () => {
    let node = await putNode(repo.store, { level: 0, buckets: [bucket(1)] })
    const valid = node
    for (let level = 1; level <= 8; level++) {
      // Summaries are honest about the multiplicity, so only sharing gives it away.
      node = await putNode(repo.store, { level, children: Array.from({ length: 32 }, () => node) })
    }
    await craftRef(repo, 'bomb', node)
    const read = await readers(repo, 'bomb')
    for (const run of [read.buckets, read.leaves, read.inspect]) {
      const error = await rejection(run())
      expect(error.code).toBe('ERR_MANIFEST_CORRUPT')
      expect(error.message).toContain('same child twice')
    }
    expect(valid.records).toBe(2)
  })

  it('two parents sharing one child: a node reached twice in one walk is IntegrityError', async () => {
    const leaf = await putNode(repo.store, { level: 0, buckets: [bucket(1)] })
    const other = await putNode(repo.store, { level: 0, buckets: [bucket(2)] })
    const left = await putNode(repo.store, { level: 1, children: [leaf, other] })
    const right = await putNode(repo.store, { level: 1, children: [leaf] })
    const root = await putNode(repo.store, { level: 2, children: [left, right] })
    await craftRef(repo, 'shared', root)
    const read = await readers(repo, 'shared')
    for (const run of [read.buckets, read.leaves]) {
      const error = await rejection(run())
      expect(error.code).toBe('ERR_MANIFEST_INTEGRITY')
      expect(error.message).toContain('reached twice')
      expect(error.cid).toBe(right.node.toString())
    }
  })

  it('a summary overstating its records is IntegrityError naming the parent and both counts', async () => {
    const leaf = await putNode(repo.store, { level: 0, buckets: [bucket(1), bucket(2)] })
    const lying = { ...leaf, records: leaf.records + 40 }
    const root = await putNode(repo.store, { level: 1, children: [lying] })
    await craftRef(repo, 'overstated', root)
    const read = await readers(repo, 'overstated')
    for (const run of [read.buckets, read.leaves, read.inspect]) {
      const error = await rejection(run())
      expect(error.code).toBe('ERR_MANIFEST_INTEGRITY')
      // The parent names the leaf's summary; a plan that reads the leaf later names the leaf.
      expect([root.node.toString(), leaf.node.toString()]).toContain(error.cid)
      expect([error.expected, error.actual]).toEqual(['44', '4'])
    }
  })

  it("a manifest whose counts disagree with its timeline's root is IntegrityError", async () => {
    const leaf = await putNode(repo.store, { level: 0, buckets: [bucket(1)] })
    await craftRef(repo, 'miscounted', leaf, { records: 1000, buckets: 1 })
    const read = await readers(repo, 'miscounted')
    for (const run of [read.buckets, read.leaves, read.inspect]) {
      const error = await rejection(run())
      expect(error.code).toBe('ERR_MANIFEST_INTEGRITY')
      expect(error.message).toContain('records')
    }
  })

  it('a child at the wrong level is IntegrityError; nesting past the limit is corrupt', async () => {
    const leaf = await putNode(repo.store, { level: 0, buckets: [bucket(1)] })
    const skipping = await putNode(repo.store, { level: 2, children: [leaf] })
    await craftRef(repo, 'skips', skipping)
    const error = await rejection((await readers(repo, 'skips')).buckets())
    expect(error.code).toBe('ERR_MANIFEST_INTEGRITY')
    expect(error.message).toContain('wrong level')
    const deep = await putNode(repo.store, { level: 49, children: [leaf] })
    await craftRef(repo, 'deep', deep)
    const tooDeep = await rejection((await readers(repo, 'deep')).buckets())
    expect(tooDeep.code).toBe('ERR_MANIFEST_CORRUPT')
    expect(tooDeep.message).toContain('deeper than the limit')
  })

  it("anchor ranges that disagree with a bucket's record count are corrupt at decode", async () => {
    for (const bad of [
      { ...bucket(1), records: 3 },
      { ...bucket(1), anchorMax: 150n },
      { ...bucket(1), anchorRanges: [] },
    ]) {
      const leaf = await putNode(repo.store, { level: 0, buckets: [bad] })
      const name = `bad-${leaf.node.toString().slice(-8)}`
      await craftRef(repo, name, leaf)
      const error = await rejection((await readers(repo, name)).buckets())
      expect(error.code).toBe('ERR_MANIFEST_CORRUPT')
    }
  })

  it('an append onto a corrupt timeline fails typed before writing the ref', async () => {
    const leaf = await putNode(repo.store, { level: 0, buckets: [bucket(1)] })
    const root = await putNode(repo.store, { level: 1, children: [{ ...leaf, bytes: 1 }] })
    const manifest = await craftRef(repo, 'damaged-branch', root)
    const error = await rejection(appendRecords(repo, 'damaged-branch', 2))
    expect(error.code).toBe('ERR_MANIFEST_INTEGRITY')
    expect((await repo.readRef('damaged-branch'))!.manifest.toString()).toBe(manifest.toString())
  })
})

describe('isolation: a damaged ref or manifest fails only what needs it', () => {
  let dir: string
  let repo: Repository
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dreamdb-isolation-'))
    repo = new Repository(await openStore(dir))
    await repo.createDataset('corpus', { schema: SCHEMA })
    await appendRecords(repo, 'corpus', 3, 'a')
    await repo.snapshot('corpus-v1', 'corpus')
    await appendRecords(repo, 'corpus', 2, 'b')
    // Three kinds of damage: a ref body that is not an envelope, a ref naming a manifest
    // that is not a manifest, a ref naming a manifest that is not in the store.
    await writeFile(join(dir, 'refs', 'broken-ref.ref'), '{"format":"dreamdb.ref/1","generation":1}')
    const garbage = await repo.store.put(new Uint8Array([0xa1, 0x61, 0x76, 0x01]), { codec: DAG_CBOR })
    await repo.store.createRef(
      'broken-manifest',
      encodeRefTarget({ kind: 'branch', manifest: garbage, timeline: null }),
    )
    const absent = cidOf(new TextEncoder().encode('never stored'))
    await repo.store.createRef(
      'missing-manifest',
      encodeRefTarget({ kind: 'snapshot', manifest: absent.toV1(), timeline: null }),
    )
  })
  afterEach(async () => {
    await repo.store.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('scanRefs lists every ref, the damaged ones marked with their error code', async () => {
    const listed = await drain(repo.scanRefs())
    const byName = listed.map((r) => [r.name, r.damaged ? r.code : 'ok']).sort()
    expect(byName).toEqual([
      ['broken-manifest', 'ERR_MANIFEST_CORRUPT'],
      ['broken-ref', 'ERR_CAS_REF_CORRUPT'],
      ['corpus', 'ok'],
      ['corpus-v1', 'ok'],
      ['missing-manifest', 'ERR_CAS_NOT_FOUND'],
    ])
    const corpus = listed.find((r) => r.name === 'corpus')!
    expect(corpus.damaged === false && corpus.records).toBe(5)
    // listRefs leaves damaged refs out instead of failing.
    expect((await drain(repo.listRefs())).map((r) => r.name).sort()).toEqual([
      'broken-manifest',
      'corpus',
      'corpus-v1',
      'missing-manifest',
    ])
  })

  it('log and inspect of the healthy refs keep working; the damaged ones fail typed', async () => {
    const history = await log(repo, 'corpus')
    expect(history.map((e) => e.change.kind)).toEqual(['append', 'append', 'create'])
    expect(history[1]!.refs).toEqual([{ name: 'corpus-v1', kind: 'snapshot' }])
    const state = await inspect(repo, 'corpus-v1')
    expect(state.stats.records).toBe(3)
    expect(state.referencedBy.map((r) => r.name)).toEqual(['corpus'])
    expect((await inspect(repo, 'corpus')).stats.records).toBe(5)
    for (const [name, code] of [
      ['broken-ref', 'ERR_CAS_REF_CORRUPT'],
      ['broken-manifest', 'ERR_MANIFEST_CORRUPT'],
      ['missing-manifest', 'ERR_CAS_NOT_FOUND'],
    ]) {
      expect((await rejection(log(repo, name!))).code).toBe(code)
      expect((await rejection(inspect(repo, name!))).code).toBe(code)
    }
  })
})
