/**
 * The documented name limits hold on every backend: a ref name of exactly the limit is
 * stored, read, moved and deleted on a folder and on MinIO; one over is refused with a
 * typed error before anything is written.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore, type Store } from '@dreamdb/cas'
import { freshBucket, minioEndpoint, type RawLocation, rejection, snapshotStore } from '@dreamdb/cas-tests'
import { describe, expect, it } from 'vitest'
import { Dataset } from '../src/index.js'
import { record, SCHEMA } from './helpers.js'

const encode = (s: string) => new TextEncoder().encode(s)

async function limits(store: Store, raw: RawLocation): Promise<void> {
  // @dreamdb/cas: 255 characters in all, 200 per segment.
  for (const name of [
    's'.repeat(200),
    `${'a'.repeat(200)}/${'b'.repeat(54)}`,
    `x/${'c'.repeat(200)}/${'d'.repeat(51)}`,
  ]) {
    expect(name.length).toBeLessThanOrEqual(255)
    const created = await store.createRef(name, encode('1'))
    const moved = await store.updateRef(name, encode('2'), created.version)
    expect(new TextDecoder().decode((await store.readRef(name))!.value)).toBe('2')
    const listed: string[] = []
    for await (const n of store.listRefs(name.slice(0, 10))) listed.push(n)
    expect(listed).toContain(name)
    await store.deleteRef(name, moved.version)
    expect(await store.readRef(name)).toBeUndefined()
  }
  const before = await snapshotStore(store, raw)
  for (const [name, reason] of [
    ['s'.repeat(201), 'the limit is 200 per segment'],
    [`${'a'.repeat(200)}/${'b'.repeat(55)}`, '256 characters long; the limit is 255'],
    ['main.', 'ends in "."'],
  ] as const) {
    const error = await rejection(store.createRef(name, encode('1')))
    expect(error, name).toMatchObject({ code: 'ERR_CAS_INVALID_REF_NAME' })
    expect(error.message).toContain(reason)
  }
  expect(await snapshotStore(store, raw)).toEqual(before)

  // Datasets, branches and snapshots: 200 characters in all.
  const name = 'n'.repeat(200)
  const ds = await Dataset.create(name, { backend: store, schema: SCHEMA })
  await ds.appendMany([record(1), record(2)])
  const snap = await ds.snapshot(`${'v'.repeat(99)}/${'w'.repeat(100)}`)
  const run = await ds.branch(`sweep/${'r'.repeat(194)}`)
  await run.addScalarLayer('pred', 'embedding', 'int', [[(await anchorsOf(ds))[0]!, 7]])
  expect((await Dataset.openRef(name, { backend: store })).manifest.stats.records).toBe(2)
  expect((await Dataset.openAt(snap, { backend: store })).manifest.stats.records).toBe(2)
  expect(
    (await Dataset.openRef(`sweep/${'r'.repeat(194)}`, { backend: store })).manifest.layers,
  ).toHaveLength(1)

  const after = await snapshotStore(store, raw)
  for (const refused of [
    () => Dataset.create('n'.repeat(201), { backend: store, schema: SCHEMA }),
    () => ds.snapshot(`${'v'.repeat(100)}/${'w'.repeat(100)}`),
    () => ds.branch(`sweep/${'r'.repeat(195)}`),
  ]) {
    const error = await rejection(refused())
    expect(error).toMatchObject({ code: 'ERR_MANIFEST_INVALID_REF_NAME' })
    expect(error.message).toContain('201 characters long; the limit is 200')
  }
  expect(await snapshotStore(store, raw)).toEqual(after)
}

async function anchorsOf(ds: Dataset): Promise<bigint[]> {
  for await (const batch of ds.iterArrowBatches({ fields: ['label'], batchSize: 8 })) {
    return Array.from(batch.getChild('_anchor')!.toArray() as BigUint64Array)
  }
  return []
}

describe('ref names at exactly the limit, and one over', () => {
  it('on a folder', async () => {
    const root = await mkdtemp(join(tmpdir(), 'dreamdb-names-'))
    try {
      await limits(await openStore(root), { folder: root })
    } finally {
      await rm(root, { recursive: true, force: true })
    }
  })

  const endpoint = minioEndpoint()
  it.runIf(endpoint !== undefined)('on MinIO', async () => {
    const bucket = await freshBucket(endpoint!)
    const store = await openStore(`${endpoint}/${bucket}`)
    try {
      await limits(store, { s3: { endpoint: endpoint!, bucket } })
    } finally {
      await store.close()
    }
  })
})
