import { openStore, type Store } from '@dreamdb/cas'
import { rejection } from '@dreamdb/cas-tests'
import * as dagCbor from '@ipld/dag-cbor'
import { beforeEach, describe, expect, it } from 'vitest'
import {
  checkMeta,
  decodeManifest,
  encodeManifest,
  inspect,
  log,
  MAX_META_BYTES,
  type Manifest,
  Repository,
} from '../src/index.js'
import { SCHEMA } from './helpers/records.js'
import { SAMPLE_MANIFEST } from './helpers/samples.js'

const META = {
  source: 'shard-00042.tar',
  progress: { files: 1200, done: false, offsets: [0, 4096, -3] },
  note: null,
}

async function appendWith(repo: Repository, meta: unknown) {
  const start = await repo.mintAnchors(1)
  const bytes = new TextEncoder().encode(`record ${start}`)
  const cid = await repo.store.put(bytes)
  const fields = { image: { cid, bytes: bytes.length }, label: { cid, bytes: bytes.length } }
  return await repo.commit(
    'corpus',
    { kind: 'append', buckets: [{ records: 1, anchorRanges: [{ start, count: 1 }], fields }] },
    { meta: meta as never },
  )
}

describe('commit meta', () => {
  let store: Store
  let repo: Repository
  beforeEach(async () => {
    store = await openStore('memory://')
    repo = new Repository(store)
    await repo.createDataset('corpus', { schema: SCHEMA })
  })

  it('is kept in the manifest and shown by log and inspect; the next commit does not inherit it', async () => {
    const first = await appendWith(repo, META)
    await appendWith(repo, undefined)
    const fresh = new Repository(store)
    expect((await fresh.loadManifest(first.manifest)).meta).toEqual(META)
    const entries = await log(fresh, 'corpus')
    expect(entries.map((e) => e.meta)).toEqual([undefined, META, undefined])
    expect('meta' in entries[0]!).toBe(false)
    expect((await inspect(fresh, first.manifest)).meta).toEqual(META)
    expect('meta' in (await inspect(fresh, 'corpus'))).toBe(false)
  })

  it('round-trips through the codec, and a manifest without meta keeps its bytes', () => {
    const withMeta: Manifest = { ...SAMPLE_MANIFEST, meta: META }
    expect(decodeManifest(encodeManifest(withMeta), 'm')).toEqual(withMeta)
    const plain = encodeManifest(SAMPLE_MANIFEST)
    expect(Object.keys(dagCbor.decode(plain) as object)).not.toContain('meta')
    expect(decodeManifest(plain, 'm')).not.toHaveProperty('meta')
  })

  it.each([
    ['a float', { ratio: 0.5 }, 'meta.ratio'],
    ['a bigint', { n: 2n ** 60n }, 'meta.n'],
    ['undefined inside', { a: { b: undefined } }, 'meta.a.b'],
    ['a nested Date', { when: [new Date(0)] }, 'meta.when[0]'],
    ['bytes', { raw: new Uint8Array(2) }, 'meta.raw'],
    ['a list at the top', [1, 2], 'meta'],
    ['a string at the top', 'x', 'meta'],
    ['too large', { blob: 'x'.repeat(MAX_META_BYTES) }, 'meta'],
    ['too deep', { a: JSON.parse(`${'['.repeat(20)}${']'.repeat(20)}`) }, 'meta.a[0][0]'],
  ])('refuses %s before anything is written, naming the key', async (_, meta, key) => {
    const before = await repo.readRef('corpus')
    const puts: unknown[] = []
    const put = repo.store.put.bind(repo.store)
    repo.store.put = (async (...args: Parameters<Store['put']>) => {
      puts.push(args[0])
      return await put(...args)
    }) as Store['put']
    const commit = repo.commit('corpus', { kind: 'append', buckets: [] }, { meta: meta as never })
    const error = (await rejection(commit)) as unknown as { code: string; key: string }
    expect(error.code).toBe('ERR_MANIFEST_INVALID_META')
    expect(error.key.startsWith(key)).toBe(true)
    expect(puts).toEqual([])
    expect((await repo.readRef('corpus'))!.version).toBe(before!.version)
  })

  it('an empty map is no meta', () => {
    expect(checkMeta({})).toBeUndefined()
    expect(checkMeta(undefined)).toBeUndefined()
  })

  it('a stored manifest with bad meta is corrupt', () => {
    const form = dagCbor.decode(encodeManifest(SAMPLE_MANIFEST)) as Record<string, unknown>
    for (const meta of [{}, { x: 1.5 }, [1], { l: new Uint8Array(1) }, 'text']) {
      const bytes = dagCbor.encode({ ...form, meta })
      expect(() => decodeManifest(bytes, 'm')).toThrow(
        expect.objectContaining({ code: 'ERR_MANIFEST_CORRUPT' }),
      )
    }
  })
})
