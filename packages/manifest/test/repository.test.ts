import { cidOf, openStore, type Store } from '@dreamdb/cas'
import { rejection } from '@dreamdb/cas-tests'
import * as dagCbor from '@ipld/dag-cbor'
import { beforeEach, describe, expect, it } from 'vitest'
import {
  type Bucket,
  type CommitOptions,
  diff,
  encodeRefTarget,
  inspect,
  log,
  type Manifest,
  Repository,
} from '../src/index.js'
import { counting } from './helpers/counting.js'
import { appendRecords, SCHEMA } from './helpers/records.js'

describe('Repository', () => {
  let store: Store
  let repo: Repository
  beforeEach(async () => {
    store = await openStore('memory://')
    repo = new Repository(store)
    await repo.createDataset('corpus', { schema: SCHEMA })
  })

  it('creates a dataset, appends, and resolves it in two requests', async () => {
    await appendRecords(repo, 'corpus', 5)
    await appendRecords(repo, 'corpus', 7)
    const { store: counted, calls } = counting(store)
    const fresh = new Repository(counted)
    const resolved = await fresh.resolve('corpus')
    expect(calls).toEqual(['readRef', 'get'])
    expect(resolved.manifest.stats).toMatchObject({ records: 12, buckets: 2 })
    expect(resolved.target.kind).toBe('branch')
  })

  it('snapshot returns { label, manifest, timeline }, is a no-op when repeated, and never moves', async () => {
    await appendRecords(repo, 'corpus', 3)
    const snap = await repo.snapshot('v1', 'corpus')
    expect(Object.keys(snap).sort()).toEqual(['label', 'manifest', 'timeline'])
    expect(await repo.snapshot('v1', 'corpus')).toEqual(snap)
    await appendRecords(repo, 'corpus', 4)
    const error = await rejection(repo.snapshot('v1', 'corpus'))
    expect(error.code).toBe('ERR_MANIFEST_LABEL_TAKEN')
    expect(error.message).toContain(snap.manifest)
    expect((await repo.resolve('v1')).target.manifest.toString()).toBe(snap.manifest)
    expect((await rejection(repo.commit('v1', { kind: 'append', buckets: [] }))).code).toBe(
      'ERR_MANIFEST_SNAPSHOT_IMMUTABLE',
    )
    expect((await rejection(repo.deleteBranch('v1'))).code).toBe('ERR_MANIFEST_SNAPSHOT_IMMUTABLE')
  })

  it('branch and snapshot cost a constant number of requests however big the dataset', async () => {
    const cost = async (label: string) => {
      const { store: counted, calls } = counting(store)
      const r = new Repository(counted)
      await r.snapshot(`snap-${label}`, 'corpus')
      const snapshot = calls.length
      calls.length = 0
      await r.branch(`branch-${label}`, 'corpus')
      return { snapshot, branch: calls.length }
    }
    const small = await cost('small')
    for (let i = 0; i < 40; i++) await appendRecords(repo, 'corpus', 50)
    const large = await cost('large')
    expect(large).toEqual(small)
    expect(small).toEqual({ snapshot: 2, branch: 2 })
  })

  it('branches move independently and can be deleted', async () => {
    await appendRecords(repo, 'corpus', 3)
    await repo.branch('sweep/lp-lr0.001-bs128', 'corpus')
    await appendRecords(repo, 'sweep/lp-lr0.001-bs128', 2)
    expect((await repo.resolve('corpus')).manifest.stats.records).toBe(3)
    expect((await repo.resolve('sweep/lp-lr0.001-bs128')).manifest.stats.records).toBe(5)
    expect((await rejection(repo.branch('sweep/lp-lr0.001-bs128', 'corpus'))).code).toBe(
      'ERR_MANIFEST_REF_EXISTS',
    )
    const names = []
    for await (const ref of repo.listRefs('sweep/')) names.push(ref.name)
    expect(names).toEqual(['sweep/lp-lr0.001-bs128'])
    await repo.deleteBranch('sweep/lp-lr0.001-bs128')
    expect((await rejection(repo.resolve('sweep/lp-lr0.001-bs128'))).code).toBe('ERR_MANIFEST_REF_NOT_FOUND')
  })

  it('anchors minted by two writers on two branches never collide', async () => {
    const other = new Repository(store, { anchorBlock: 4 })
    const mine = new Repository(store, { anchorBlock: 4 })
    await repo.branch('b', 'corpus')
    const starts: bigint[] = []
    for (let i = 0; i < 10; i++) {
      starts.push((await appendRecords(mine, 'corpus', 3)).start)
      starts.push((await appendRecords(other, 'b', 3)).start)
    }
    const anchors = starts.flatMap((s) => [s, s + 1n, s + 2n])
    expect(new Set(anchors.map(String)).size).toBe(anchors.length)
  })

  describe('bad input: a typed error, and nothing written', () => {
    it.each([
      '',
      '/x',
      'x/',
      'a..b',
      'a b',
      'a~1',
      'a^',
      'a:b',
      'a?',
      'a*',
      'a[',
      'a\\b',
      '../escape',
      '_dreamdb/x',
      'x\u0001',
    ])('ref name %j', async (name) => {
      for (const attempt of [
        () => repo.branch(name, 'corpus'),
        () => repo.snapshot(name, 'corpus'),
        () => repo.createDataset(name, { schema: SCHEMA }),
      ]) {
        const error = await rejection(attempt())
        expect(error.code).toBe('ERR_MANIFEST_INVALID_REF_NAME')
      }
      const names = []
      for await (const ref of repo.listRefs()) names.push(ref.name)
      expect(names).toEqual(['corpus'])
    })

    it('opening a missing ref', async () => {
      const error = await rejection(repo.resolve('nope'))
      expect(error.code).toBe('ERR_MANIFEST_REF_NOT_FOUND')
      expect(error.message).toContain("'nope'")
    })

    it.each([
      [{ fields: [{ name: 'x', family: 'tensor' }] }, 'family'],
      [{ fields: [{ name: '1x', family: 'scalar', kind: 'int' }] }, 'field name'],
      [{ fields: [{ name: 'x', family: 'scalar', kind: 'complex' }] }, 'kind'],
      [{ fields: [{ name: 'e', family: 'embedding', dim: 0 }] }, 'dim'],
      [{ fields: [{ name: 'e', family: 'embedding', dim: 8, metric: 'hamming' }] }, 'metric'],
      [
        {
          fields: [
            { name: 'x', family: 'scalar', kind: 'int' },
            { name: 'x', family: 'scalar', kind: 'int' },
          ],
        },
        'twice',
      ],
    ])('schema %j', async (schema, words) => {
      const error = await rejection(repo.createDataset('new', { schema: schema as never }))
      expect(error.code).toBe('ERR_MANIFEST_INVALID_SCHEMA')
      expect(error.message).toContain(words)
      expect((await rejection(repo.resolve('new'))).code).toBe('ERR_MANIFEST_REF_NOT_FOUND')
    })

    it('an append missing a field, with a wrong anchor count, or naming a missing object', async () => {
      const start = await repo.mintAnchors(2)
      const label = { cid: await store.put(new TextEncoder().encode('["a","b"]')), bytes: 9 }
      const before = (await repo.resolve('corpus')).target.manifest.toString()
      const cases = [
        [
          { records: 2, anchorRanges: [{ start, count: 2 }], fields: { label } },
          'ERR_MANIFEST_INVALID_CHANGE',
        ],
        [
          { records: 3, anchorRanges: [{ start, count: 2 }], fields: { label, image: label } },
          'ERR_MANIFEST_INVALID_CHANGE',
        ],
        [
          { records: 2, anchorRanges: [{ start, count: 2 }], fields: { label, image: label, bogus: label } },
          'ERR_MANIFEST_INVALID_CHANGE',
        ],
        [
          {
            records: 2,
            anchorRanges: [{ start, count: 2 }],
            fields: { label, image: { cid: cidOf(new Uint8Array([9])), bytes: 1 } },
          },
          'ERR_MANIFEST_MISSING_OBJECT',
        ],
      ] as const
      for (const [bucket, code] of cases) {
        const error = await rejection(repo.commit('corpus', { kind: 'append', buckets: [bucket as never] }))
        expect(error.code).toBe(code)
      }
      expect((await repo.resolve('corpus')).target.manifest.toString()).toBe(before)
    })

    it('a layer on a missing parent field or clashing with a base field', async () => {
      const values = { cid: await store.put(new Uint8Array([1])), bytes: 1 }
      const segment = { records: 1, anchorMin: 1n, anchorMax: 1n, fields: { prediction: values } }
      const bad = await rejection(
        repo.commit('corpus', {
          kind: 'layer',
          name: 'prediction',
          parent: 'embedding',
          field: { name: 'prediction', family: 'scalar', kind: 'categorical' },
          segments: [segment],
        }),
      )
      expect(bad.code).toBe('ERR_MANIFEST_INVALID_SCHEMA')
      expect(bad.message).toContain("parent field 'embedding'")
      const clash = await rejection(
        repo.commit('corpus', {
          kind: 'layer',
          name: 'label',
          parent: 'image',
          field: { name: 'label', family: 'scalar', kind: 'categorical' },
          segments: [{ ...segment, fields: { label: values } }],
        }),
      )
      expect(clash.code).toBe('ERR_MANIFEST_INVALID_SCHEMA')
    })

    it('a corrupted manifest, a manifest from a newer version, and a corrupted ref', async () => {
      await appendRecords(repo, 'corpus', 2)
      const head = (await repo.readRef('corpus'))!
      const form = dagCbor.decode(await store.get(head.manifest)) as Record<string, unknown>
      const newer = await store.put(dagCbor.encode({ ...form, v: 2 }), { codec: 0x71 })
      await store.updateRef(
        'corpus',
        encodeRefTarget({ kind: 'branch', manifest: newer, timeline: null }),
        head.version,
      )
      const fresh = new Repository(store)
      expect((await rejection(fresh.resolve('corpus'))).code).toBe('ERR_MANIFEST_UNSUPPORTED_VERSION')
      const garbage = await store.put(new TextEncoder().encode('not cbor at all'), { codec: 0x71 })
      const current = (await store.readRef('corpus'))!
      await store.updateRef(
        'corpus',
        encodeRefTarget({ kind: 'branch', manifest: garbage, timeline: null }),
        current.version,
      )
      expect((await rejection(new Repository(store).resolve('corpus'))).code).toBe('ERR_MANIFEST_CORRUPT')
      const now = (await store.readRef('corpus'))!
      await store.updateRef('corpus', new TextEncoder().encode('{"kind":"branch"}'), now.version)
      expect((await rejection(new Repository(store).resolve('corpus'))).code).toBe('ERR_MANIFEST_CORRUPT')
    })
  })

  describe('concurrent changes that do not commute', () => {
    /** Run `mine` against a head that `theirs` moves underneath it, once: mine's rejection. */
    async function race(theirs: () => Promise<unknown>, mine: (r: Repository) => Promise<unknown>) {
      return await rejection(interfere(theirs, mine))
    }

    /** Run `mine` against a head that `theirs` moves underneath it, once: mine's outcome. */
    async function interfere<T>(
      theirs: () => Promise<unknown>,
      mine: (r: Repository) => Promise<T>,
    ): Promise<T> {
      let interfered = false
      const update = store.updateRef.bind(store)
      const racingStore = new Proxy(store, {
        get(target, key, receiver) {
          if (key === 'updateRef') {
            return async (...args: Parameters<Store['updateRef']>) => {
              if (!interfered && args[0] === 'corpus') {
                interfered = true
                await theirs()
              }
              return update(...args)
            }
          }
          const value = Reflect.get(target, key, receiver)
          return typeof value === 'function' ? value.bind(target) : value
        },
      })
      return await mine(new Repository(racingStore as Store))
    }

    it('an append racing a schema change fails with CommitConflictError naming both manifests', async () => {
      const base = (await repo.resolve('corpus')).target.manifest.toString()
      const error = await race(
        () =>
          repo.commit('corpus', {
            kind: 'schema',
            add: [{ name: 'split', family: 'scalar', kind: 'categorical' }],
          }),
        (r) => appendRecords(r, 'corpus', 2),
      )
      expect(error.code).toBe('ERR_MANIFEST_CONFLICT')
      expect(error.baseManifest).toBe(base)
      const head = (await repo.resolve('corpus')).target.manifest.toString()
      expect(error.headManifest).toBe(head)
      expect(error.message).toContain(base)
      expect(error.message).toContain(head)
      expect(error.message).toContain('split')
    })

    it('two writes of the same layer conflict; layers with different names rebase', async () => {
      await appendRecords(repo, 'corpus', 2)
      const values = { cid: await store.put(new Uint8Array([7])), bytes: 1 }
      const layer = (name: string) => ({
        kind: 'layer' as const,
        name,
        parent: 'image',
        field: { name, family: 'scalar' as const, kind: 'categorical' as const },
        segments: [{ records: 1, anchorMin: 1n, anchorMax: 1n, fields: { [name]: values } }],
      })
      // Two messages: the same change with the same parent in the same millisecond would be
      // the same manifest, which the second writer rightly takes for its own (idempotent).
      const same = await race(
        () => repo.commit('corpus', layer('prediction'), { message: 'theirs' }),
        (r) => r.commit('corpus', layer('prediction'), { message: 'mine' }),
      )
      expect(same.code).toBe('ERR_MANIFEST_CONFLICT')
      const raced = new Repository(store)
      await Promise.all([
        raced.commit('corpus', layer('p1')),
        repo.commit('corpus', layer('p2')),
        appendRecords(repo, 'corpus', 1),
      ])
      const head = await repo.resolve('corpus')
      expect(head.manifest.layers.map((l) => l.name)).toEqual(['p1', 'p2', 'prediction'])
      expect(head.manifest.stats.records).toBe(3)
    })

    describe('dropping a layer', () => {
      /** A one-record layer `name` on `parent`. */
      const layer = async (name: string, parent = 'image') => ({
        kind: 'layer' as const,
        name,
        parent,
        field: { name, family: 'scalar' as const, kind: 'categorical' as const },
        segments: [
          {
            records: 1,
            anchorMin: 1n,
            anchorMax: 1n,
            fields: { [name]: { cid: await store.put(new Uint8Array([9])), bytes: 1 } },
          },
        ],
      })
      const drop = (name: string) => ({ kind: 'drop' as const, layer: name })

      it('removes it from the head, its bytes from the stats; a fresh reader decodes the change; the snapshot before keeps it', async () => {
        await appendRecords(repo, 'corpus', 1)
        await repo.commit('corpus', await layer('prediction'))
        const before = await repo.snapshot('before-drop', 'corpus')
        expect((await repo.resolve('corpus')).manifest.stats.bytes.prediction).toBe(1)
        await repo.commit('corpus', drop('prediction'))
        const head = await new Repository(store).resolve('corpus')
        expect(head.manifest.layers).toEqual([])
        expect(head.manifest.change).toEqual({ kind: 'drop', layer: 'prediction', records: 1 })
        expect(head.manifest.message).toBe('drop layer prediction (1 records)')
        expect(head.manifest.stats.bytes.prediction).toBeUndefined()
        expect((await repo.resolve(before.label)).manifest.layers.map((l) => l.name)).toEqual(['prediction'])
        // Written again after a drop, it starts over.
        await repo.commit('corpus', await layer('prediction'))
        expect((await repo.resolve('corpus')).manifest.layers[0]).toMatchObject({
          name: 'prediction',
          records: 1,
        })
      })

      it('a layer that is not there, or that another derives from, is refused with nothing written', async () => {
        await appendRecords(repo, 'corpus', 1)
        await repo.commit('corpus', await layer('prediction'))
        await repo.commit('corpus', await layer('reviewed', 'prediction'))
        const head = (await repo.resolve('corpus')).target.manifest.toString()
        const refusals: [string, string][] = [
          ['nope', "no layer 'nope' (layers: 'prediction', 'reviewed')"],
          ['label', "'label' is a base field, not a layer"],
          ['prediction', "layer 'reviewed' derives from 'prediction'"],
        ]
        for (const [name, words] of refusals) {
          const error = await rejection(repo.commit('corpus', drop(name)))
          expect(error).toMatchObject({
            code: 'ERR_MANIFEST_INVALID_CHANGE',
            message: expect.stringContaining(words),
          })
        }
        expect((await repo.resolve('corpus')).target.manifest.toString()).toBe(head)
      })

      it('conflicts with a concurrent write or drop of the same layer, and with a new layer on it; rebases over appends and other layers', async () => {
        await appendRecords(repo, 'corpus', 1)
        await repo.commit('corpus', await layer('prediction'))
        const written = await race(
          async () => repo.commit('corpus', await layer('prediction'), { message: 'theirs' }),
          (r) => r.commit('corpus', drop('prediction')),
        )
        expect(written).toMatchObject({
          code: 'ERR_MANIFEST_CONFLICT',
          message: expect.stringContaining("layer 'prediction'"),
        })
        const derived = await race(
          () => repo.commit('corpus', drop('prediction')),
          async (r) => r.commit('corpus', await layer('reviewed', 'prediction')),
        )
        expect(derived).toMatchObject({
          code: 'ERR_MANIFEST_CONFLICT',
          message: expect.stringContaining("'prediction' was dropped"),
        })
        await repo.commit('corpus', await layer('prediction'))
        await repo.commit('corpus', await layer('other'))
        const raced = new Repository(store)
        await raced.resolve('corpus')
        await Promise.all([
          raced.commit('corpus', drop('prediction')),
          appendRecords(repo, 'corpus', 2),
          repo.commit('corpus', await layer('third')),
        ])
        const head = await repo.resolve('corpus')
        expect(head.manifest.layers.map((l) => l.name)).toEqual(['other', 'third'])
        expect(head.manifest.stats.records).toBe(3)
      })
    })

    describe('dropping a base field', () => {
      const dropField = (name: string) => ({ kind: 'drop-field' as const, field: name })
      const keysOf = async (r: Repository) => {
        const keys: string[][] = []
        for await (const { bucket } of r.buckets((await r.resolve('corpus')).manifest))
          keys.push(Object.keys(bucket.fields).sort())
        return keys
      }

      it('takes it out of the schema and every bucket, its bytes out of the stats; the snapshot before keeps it; the name can be added again, its older records without values', async () => {
        await appendRecords(repo, 'corpus', 2)
        await appendRecords(repo, 'corpus', 3)
        const before = await repo.snapshot('before-drop-field', 'corpus')
        const timeline = (await repo.resolve('corpus')).manifest.timeline
        await repo.commit('corpus', dropField('image'))
        const head = await new Repository(store).resolve('corpus')
        expect(head.manifest.schema.fields.map((f) => f.name)).toEqual(['label'])
        expect(head.manifest.change).toEqual({ kind: 'drop-field', field: 'image', buckets: 2 })
        expect(head.manifest.message).toBe('drop field image (2 buckets)')
        expect(head.manifest.stats.bytes.image).toBeUndefined()
        expect(head.manifest.stats).toMatchObject({ records: 5, buckets: 2 })
        expect(head.manifest.timeline?.toString()).not.toBe(timeline?.toString())
        expect(await keysOf(repo)).toEqual([['label'], ['label']])
        const pinned = (await repo.resolve(before.label)).manifest
        expect(pinned.schema.fields.map((f) => f.name)).toEqual(['image', 'label'])
        expect(pinned.timeline?.toString()).toBe(timeline?.toString())
        // Compared bucket by bucket on the fields both states have: no record changed.
        expect(await diff(repo, before.label, 'corpus')).toMatchObject({
          fields: { added: [], removed: ['image'], changed: [] },
          buckets: { added: 0, removed: 0 },
          records: { added: 0, removed: 0 },
        })
        // Given to a new field, the name starts with no values in the older buckets.
        await repo.commit('corpus', {
          kind: 'schema',
          add: [{ name: 'image', family: 'scalar', kind: 'string' }],
        })
        expect(await keysOf(repo)).toEqual([['label'], ['label']])
      })

      it('a field that is not there, a layer, the last field and a field a layer derives from are refused with nothing written', async () => {
        await appendRecords(repo, 'corpus', 1)
        const values = { cid: await store.put(new Uint8Array([9])), bytes: 1 }
        await repo.commit('corpus', {
          kind: 'layer',
          name: 'prediction',
          parent: 'image',
          field: { name: 'prediction', family: 'scalar', kind: 'categorical' },
          segments: [{ records: 1, anchorMin: 1n, anchorMax: 1n, fields: { prediction: values } }],
        })
        const head = (await repo.resolve('corpus')).target.manifest.toString()
        const refusals: [string, string][] = [
          ['nope', "no base field 'nope' (base fields: 'image', 'label')"],
          ['prediction', "'prediction' is a layer, not a base field"],
          ['image', "layer 'prediction' derives from 'image'; drop it first"],
        ]
        for (const [name, words] of refusals) {
          const error = await rejection(repo.commit('corpus', dropField(name)))
          expect(error).toMatchObject({
            code: 'ERR_MANIFEST_INVALID_CHANGE',
            message: expect.stringContaining(words),
          })
        }
        expect((await repo.resolve('corpus')).target.manifest.toString()).toBe(head)
        await repo.commit('corpus', dropField('label'))
        const last = await rejection(repo.commit('corpus', dropField('image')))
        expect(last.message).toContain("'image' is the only base field")
      })

      it('conflicts with an append that wrote it, a schema change and a layer on it; rebases over appends that landed first', async () => {
        await appendRecords(repo, 'corpus', 1)
        const appended = await race(
          () => repo.commit('corpus', dropField('image')),
          (r) => appendRecords(r, 'corpus', 2),
        )
        expect(appended).toMatchObject({
          code: 'ERR_MANIFEST_CONFLICT',
          message: expect.stringContaining('field image was dropped while this commit appended values of it'),
        })
        const image = { name: 'image', family: 'binary' as const, media: 'image' as const }
        await repo.commit('corpus', { kind: 'schema', add: [image] })
        const schema = await race(
          () =>
            repo.commit('corpus', {
              kind: 'schema',
              add: [{ name: 'split', family: 'scalar', kind: 'categorical' }],
            }),
          (r) => r.commit('corpus', dropField('label')),
        )
        expect(schema).toMatchObject({
          code: 'ERR_MANIFEST_CONFLICT',
          message: expect.stringContaining('schema'),
        })
        const layered = await race(
          () => repo.commit('corpus', dropField('split')),
          async (r) =>
            r.commit('corpus', {
              kind: 'layer',
              name: 'prediction',
              parent: 'split',
              field: { name: 'prediction', family: 'scalar', kind: 'categorical' },
              segments: [
                {
                  records: 1,
                  anchorMin: 1n,
                  anchorMax: 1n,
                  fields: { prediction: { cid: await store.put(new Uint8Array([9])), bytes: 1 } },
                },
              ],
            }),
        )
        expect(layered.message).toContain("field 'split' was dropped concurrently")
        // An append that lands first loses the field in the drop's commit, rebased onto it; the
        // first bucket, whose image was dropped before, keeps no object at all.
        const dropping = new Repository(store)
        await dropping.resolve('corpus')
        await appendRecords(repo, 'corpus', 4)
        await dropping.commit('corpus', dropField('label'))
        const head = (await repo.resolve('corpus')).manifest
        expect(head.schema.fields.map((f) => f.name)).toEqual(['image'])
        expect(head.stats.records).toBe(5)
        expect(await keysOf(repo)).toEqual([[], ['image']])
      })
    })

    it('a restore takes the state of another manifest; an append that lands first is a conflict', async () => {
      await appendRecords(repo, 'corpus', 2)
      const past = await repo.resolve('corpus')
      await appendRecords(repo, 'corpus', 3)
      const restore = { kind: 'restore' as const, from: past.target.manifest, state: past.manifest }
      const lost = await race(
        () => appendRecords(repo, 'corpus', 1),
        (r) => r.commit('corpus', restore),
      )
      expect(lost).toMatchObject({
        code: 'ERR_MANIFEST_CONFLICT',
        message: expect.stringContaining('moved (append)'),
      })
      const before = (await repo.resolve('corpus')).target.manifest
      await repo.commit('corpus', restore)
      const head = await new Repository(store).resolve('corpus')
      expect(head.manifest.change).toEqual({ kind: 'restore', from: past.target.manifest })
      expect(head.manifest.parents).toEqual([before])
      expect(head.manifest.timeline?.toString()).toBe(past.manifest.timeline?.toString())
      expect(head.manifest.stats).toEqual(past.manifest.stats)
      // A change prepared before a restore landed is not applied to the state it brought back.
      const restored = await race(
        async () => repo.commit('corpus', { ...restore, state: (await repo.resolve('corpus')).manifest }),
        (r) => appendRecords(r, 'corpus', 1),
      )
      expect(restored).toMatchObject({
        code: 'ERR_MANIFEST_CONFLICT',
        message: expect.stringContaining('restored to another state concurrently'),
      })
      const refused = await rejection(
        repo.commit('corpus', { kind: 'restore', from: 'x' as never, state: past.manifest }),
      )
      expect(refused.code).toBe('ERR_MANIFEST_INVALID_CHANGE')
    })

    it("a merge appends the other head's buckets after this branch's, with two parents; it rebases over appends and conflicts with its layers written meanwhile", async () => {
      await appendRecords(repo, 'corpus', 1)
      await repo.branch('feature', 'corpus')
      await appendRecords(repo, 'feature', 2, 'theirs')
      const theirs = await repo.resolve('feature')
      const buckets: Bucket[] = []
      for await (const { position, bucket } of repo.buckets(theirs.manifest))
        if (position >= 1) buckets.push(bucket)
      const merge = { kind: 'merge' as const, from: theirs.target.manifest, buckets, layers: [], dropped: [] }
      // An append that lands first: the merged bucket goes after it.
      const landed = await interfere(
        () => appendRecords(repo, 'corpus', 3),
        (r) => r.commit('corpus', merge),
      )
      expect(landed.attempts).toBe(2)
      const head = await new Repository(store).resolve('corpus')
      expect(head.manifest.change).toEqual({
        kind: 'merge',
        from: theirs.target.manifest,
        buckets: 1,
        records: 2,
        layers: [],
      })
      expect(head.manifest.parents).toHaveLength(2)
      expect(head.manifest.parents[1]).toEqual(theirs.target.manifest)
      expect(head.manifest.stats).toMatchObject({ records: 6, buckets: 3 })
      const records: number[] = []
      for await (const { bucket } of repo.buckets(head.manifest)) records.push(bucket.records)
      expect(records).toEqual([1, 3, 2])
      // Its layers written meanwhile conflict.
      const values = { cid: await store.put(new Uint8Array([9])), bytes: 1 }
      const layer = {
        name: 'prediction',
        parent: 'image',
        field: { name: 'prediction', family: 'scalar' as const, kind: 'categorical' as const },
        segments: values.cid,
        records: 1,
        bytes: 1,
      }
      const lost = await race(
        () =>
          repo.commit('corpus', {
            kind: 'layer',
            name: 'prediction',
            parent: 'image',
            field: layer.field,
            segments: [{ records: 1, anchorMin: 1n, anchorMax: 1n, fields: { prediction: values } }],
          }),
        (r) => r.commit('corpus', { ...merge, buckets: [], layers: [layer as never] }),
      )
      expect(lost).toMatchObject({
        code: 'ERR_MANIFEST_CONFLICT',
        message: expect.stringContaining("layer 'prediction'"),
      })
    })

    describe("a writer's own test of the commits it lands after (conflictsWith, since)", () => {
      /** An append of `count` records whose commit carries `meta`, with commit `options`. */
      async function append(r: Repository, tag: string, options: CommitOptions = {}) {
        const start = await r.mintAnchors(1)
        const cid = await r.store.put(new TextEncoder().encode(tag))
        return await r.commit(
          'corpus',
          {
            kind: 'append',
            buckets: [
              {
                records: 1,
                anchorRanges: [{ start, count: 1 }],
                fields: { image: { cid, bytes: 1 }, label: { cid, bytes: 1 } },
              },
            ],
          },
          { ...options, message: tag, meta: { tag } },
        )
      }
      const head = async () => (await repo.resolve('corpus')).target.manifest.toString()
      /** A test that names every commit tagged `tag` a conflict, and records what it was shown. */
      function refusing(tag: string) {
        const shown: string[] = []
        const test = (theirs: Manifest) => {
          shown.push(String(theirs.meta?.tag ?? theirs.message))
          return theirs.meta?.tag === tag ? `'${tag}' is in the way` : undefined
        }
        return { shown, test }
      }

      it('every commit after `since` is shown to the test, those under the head it starts from included; a reason fails the commit with nothing landed', async () => {
        const since = (await append(repo, 'a')).manifest
        await append(repo, 'b')
        await append(repo, 'c')
        const before = await head()
        const { shown, test } = refusing('b')
        const error = await rejection(append(repo, 'mine', { since, conflictsWith: test }))
        expect(error).toMatchObject({
          code: 'ERR_MANIFEST_CONFLICT',
          message: expect.stringContaining("'b' is in the way"),
        })
        expect(shown).toEqual(['c', 'b'])
        expect(await head()).toBe(before)
        // Nothing in the way: it lands on the head, after the same walk.
        const clear = refusing('none')
        const landed = await append(repo, 'mine', { since, conflictsWith: clear.test })
        expect(clear.shown).toEqual(['c', 'b'])
        expect(landed.manifest.toString()).toBe(await head())
      })

      it('a commit that loses the race walks the new commits through the test too', async () => {
        const since = (await repo.resolve('corpus')).target.manifest
        const { shown, test } = refusing('theirs')
        const error = await race(
          () => append(repo, 'theirs'),
          (r) => append(r, 'mine', { since, conflictsWith: test }),
        )
        expect(error).toMatchObject({
          code: 'ERR_MANIFEST_CONFLICT',
          message: expect.stringContaining("'theirs' is in the way"),
        })
        expect(shown).toEqual(['theirs'])
        expect((await repo.resolve('corpus')).manifest.meta).toEqual({ tag: 'theirs' })
      })

      it('a writer whose remembered head is stale still shows the test what landed since', async () => {
        // This repository remembers its own last commit; another writer moves the branch.
        const mine = (await append(repo, 'a')).manifest
        await append(new Repository(store), 'theirs')
        const { shown, test } = refusing('theirs')
        const error = await rejection(append(repo, 'mine', { since: mine, conflictsWith: test }))
        expect(error.code).toBe('ERR_MANIFEST_CONFLICT')
        expect(shown).toEqual(['theirs'])
      })

      it('since null: the whole history; a since the branch does not hold is a conflict', async () => {
        await append(repo, 'a')
        const all = refusing('none')
        await append(repo, 'b', { since: null, conflictsWith: all.test })
        expect(all.shown).toEqual(['a', 'create dataset corpus'])
        const elsewhere = cidOf(new TextEncoder().encode('not a manifest of this branch'))
        const error = await rejection(
          append(repo, 'c', { since: elsewhere, conflictsWith: refusing('none').test }),
        )
        expect(error).toMatchObject({
          code: 'ERR_MANIFEST_CONFLICT',
          message: expect.stringContaining('no longer holds'),
        })
      })
    })
  })

  it('compaction merges buckets without changing any record, anchor, or snapshot', async () => {
    const appended = []
    for (let i = 0; i < 6; i++) appended.push(await appendRecords(repo, 'corpus', 1, `r${i}`))
    const before = await inspect(repo, 'corpus')
    const snap = await repo.snapshot('before-compaction', 'corpus')
    const merged = { cid: await store.put(new TextEncoder().encode('merged')), bytes: 6 }
    const ranges = before.buckets
      .slice(1, 5)
      .flatMap((b) => b.anchors.ranges!.map(([s, n]) => ({ start: BigInt(s), count: n })))
    await repo.commit('corpus', {
      kind: 'compact',
      start: 1,
      count: 4,
      replacement: [
        {
          records: 4,
          anchorRanges: ranges,
          timeMin: before.buckets[1]!.time[0],
          timeMax: before.buckets[4]!.time[1],
          fields: { image: merged, label: merged },
        },
      ],
    })
    const after = await inspect(repo, 'corpus')
    expect(after.stats).toMatchObject({ records: 6, buckets: 3 })
    const anchorsOf = (s: typeof before) =>
      s.buckets.flatMap((b) =>
        b.anchors.ranges!.flatMap(([x, n]) => Array.from({ length: n }, (_, i) => BigInt(x) + BigInt(i))),
      )
    expect(anchorsOf(after)).toEqual(anchorsOf(before))
    expect((await inspect(repo, 'before-compaction')).buckets).toEqual(before.buckets)
    expect(snap.manifest).toBe(before.manifest)
    const wrong = await rejection(
      repo.commit('corpus', {
        kind: 'compact',
        start: 0,
        count: 2,
        replacement: [
          { records: 2, anchorRanges: [{ start: 999n, count: 2 }], fields: { image: merged, label: merged } },
        ],
      }),
    )
    expect(wrong.code).toBe('ERR_MANIFEST_INVALID_CHANGE')
  })

  it('log, inspect and diff describe history without reading records', async () => {
    await appendRecords(repo, 'corpus', 4)
    const v1 = await repo.snapshot('v1', 'corpus')
    await appendRecords(repo, 'corpus', 6)
    await repo.commit('corpus', {
      kind: 'schema',
      add: [{ name: 'split', family: 'scalar', kind: 'categorical' }],
    })
    await repo.branch('exp', 'corpus')
    const history = await log(repo, 'corpus')
    expect(history.map((e) => e.change.kind)).toEqual(['schema', 'append', 'append', 'create'])
    expect(history[0]!.refs).toEqual([
      { name: 'corpus', kind: 'branch' },
      { name: 'exp', kind: 'branch' },
    ])
    expect(history[2]!.refs).toEqual([{ name: 'v1', kind: 'snapshot' }])
    const state = await inspect(repo, 'v1')
    expect(state.ref).toEqual({ name: 'v1', kind: 'snapshot' })
    expect(state.stats).toMatchObject({ records: 4, buckets: 1 })
    expect(state.depth).toBe(2)
    expect(state.referencedBy.map((r) => r.name).sort()).toEqual(['corpus', 'exp'])
    expect(state.objects.filter((o) => o.role === 'field').length).toBe(2)
    const changes = await diff(repo, 'v1', 'corpus')
    expect(changes).toMatchObject({
      from: v1.manifest,
      fields: { added: ['split'], removed: [], changed: [] },
      buckets: { added: 1, removed: 0 },
      records: { added: 6, removed: 0 },
    })
    expect(JSON.parse(JSON.stringify(state))).toEqual(state)
  })
})

describe('migrate', () => {
  it('re-encodes one field of every bucket; records, anchors, other fields and snapshots keep their content', async () => {
    const store = await openStore('memory://')
    const repo = new Repository(store, { fanout: 4 })
    await repo.createDataset('corpus', { schema: SCHEMA })
    for (let i = 0; i < 9; i++) await appendRecords(repo, 'corpus', 2, `r${i}`)
    const before = await inspect(repo, 'corpus')
    await repo.snapshot('pre-migration', 'corpus')
    const objects = []
    for (const bucket of before.buckets) {
      const bytes = new TextEncoder().encode(`re-encoded image of bucket ${bucket.position}`)
      objects.push({ image: { cid: await store.put(bytes), bytes: bytes.byteLength } })
    }
    await repo.commit('corpus', {
      kind: 'migrate',
      field: { name: 'image', family: 'binary', media: 'bytes' },
      objects,
    })
    const after = await inspect(repo, 'corpus')
    expect(after.schema.fields.find((f) => f.name === 'image')).toEqual({
      name: 'image',
      family: 'binary',
      media: 'bytes',
    })
    expect(after.buckets.map((b) => b.anchors)).toEqual(before.buckets.map((b) => b.anchors))
    expect(after.buckets.map((b) => b.objects.label)).toEqual(before.buckets.map((b) => b.objects.label))
    expect(after.buckets.map((b) => b.objects.image!.cid)).toEqual(objects.map((o) => o.image.cid.toString()))
    expect(after.stats.records).toBe(before.stats.records)
    expect((await log(repo, 'corpus'))[0]!.change).toEqual({ kind: 'migrate', field: 'image', buckets: 9 })
    expect((await inspect(repo, 'pre-migration')).buckets).toEqual(before.buckets)
    const wrong = await rejection(
      repo.commit('corpus', {
        kind: 'migrate',
        field: { name: 'image', family: 'binary', media: 'bytes' },
        objects: objects.slice(1),
      }),
    )
    expect(wrong.code).toBe('ERR_MANIFEST_INVALID_CHANGE')
  })
})
