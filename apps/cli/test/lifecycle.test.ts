/**
 * `dreamdb branch --delete`, `dreamdb snapshot --delete --force`, `dreamdb fsck` and
 * `dreamdb gc` as a user and a CI script see them: text, --json, exit codes.
 */
import { mkdir, rm, utimes, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openStore } from '@dreamdb/cas'
import { Repository } from '@dreamdb/manifest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cli, tempDir } from './helpers.js'

let dir: { path: string; remove: () => Promise<void> }
const run = (args: string[]) => cli(args, { cwd: dir.path })
// biome-ignore lint/suspicious/noExplicitAny: the CLI's JSON documents, checked field by field
const json = (stdout: string) => JSON.parse(stdout) as Record<string, any>
let orphanPath = ''

beforeAll(async () => {
  dir = await tempDir()
  const backend = join(dir.path, '.dreamdb')
  const store = await openStore(backend)
  const repo = new Repository(store)
  await repo.createDataset('corpus', {
    schema: { fields: [{ name: 'label', family: 'scalar', kind: 'categorical' }] },
  })
  const labels = await store.put(new TextEncoder().encode('["a","b"]'))
  const start = await repo.mintAnchors(2)
  await repo.commit('corpus', {
    kind: 'append',
    buckets: [
      { records: 2, anchorRanges: [{ start, count: 2 }], fields: { label: { cid: labels, bytes: 9 } } },
    ],
  })
  await repo.snapshot('corpus-v1', 'corpus')
  await repo.branch('sweep/a', 'corpus')
  await repo.branch('sweep/b', 'corpus')
  // An aborted append's object, two days old, and a dead writer's staging file.
  const orphan = await store.put(new TextEncoder().encode('aborted'))
  const hex = Buffer.from(orphan.multihash.digest).toString('hex')
  orphanPath = join(backend, 'objects', 'sha2-256', hex.slice(0, 2), hex)
  const old = new Date(Date.now() - 2 * 86_400_000)
  await utimes(orphanPath, old, old)
  await mkdir(join(backend, 'tmp'), { recursive: true })
  await writeFile(join(backend, 'tmp', '999999-host-dead'), 'half')
  await utimes(join(backend, 'tmp', '999999-host-dead'), old, old)
  await store.close()
}, 60_000)

afterAll(() => dir.remove())

describe('dreamdb branch/snapshot --delete, fsck, gc', () => {
  it('deletes a branch (text and --json), refuses a snapshot without --force, and a stale --expect', async () => {
    const gone = await run(['branch', 'sweep/a', '--delete'])
    expect(gone.code).toBe(0)
    expect(gone.stdout).toContain("deleted branch 'sweep/a'")
    const moved = await run([
      'branch',
      'sweep/b',
      '--delete',
      '--expect',
      'bafyreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy',
    ])
    expect(moved.code).toBe(4)
    expect(moved.stderr).toContain('ERR_MANIFEST_REF_MOVED')
    const b = json((await run(['branch', 'sweep/b', '--delete', '--json'])).stdout)
    expect(b).toMatchObject({ format: 'dreamdb.delete/1', deleted: 'sweep/b', kind: 'branch' })
    const snap = await run(['branch', 'corpus-v1', '--delete'])
    expect(snap.code).toBe(2)
    const unforced = await run(['snapshot', 'corpus-v1', '--delete'])
    expect(unforced.code).toBe(2)
    expect(unforced.stderr).toContain('--force')
    const hidden = await run(['branch', '_dreamdb/anchor-counter', '--delete'])
    expect(hidden.code).toBe(1)
    expect(hidden.stderr).toContain('ERR_MANIFEST_INVALID_REF_NAME')
    const missing = await run(['branch', 'nope', '--delete'])
    expect(missing.code).toBe(3)
    const refs = json((await run(['refs', '--json'])).stdout)
    expect(refs.refs.map((r: { name: string }) => r.name).sort()).toEqual(['corpus', 'corpus-v1'])
  })

  it('fsck: exit 0 and counts when whole; gc: a dry run, then --apply frees the old garbage', async () => {
    const clean = await run(['fsck', '--json'])
    expect(clean.code).toBe(0)
    const report = json(clean.stdout)
    expect(report).toMatchObject({ format: 'dreamdb.fsck/1', ok: true, missing: [], corrupt: [] })
    expect(report.unreachable.objects).toBe(1)
    expect(report.leftovers.objects).toBe(1)
    const text = await run(['fsck'])
    expect(text.stdout).toContain('ok: the store is whole')

    const short = await run(['gc', '--grace', '10m'])
    expect(short.code).toBe(1)
    expect(short.stderr).toContain('ERR_MANIFEST_INVALID_GC_OPTION')
    const dry = json((await run(['gc', '--grace', '1d', '--json'])).stdout)
    expect(dry).toMatchObject({ dryRun: true, sweep: { objects: 1 }, leftovers: { old: 1, deleted: 0 } })
    expect((await run(['fsck', '--json'])).stdout).toContain('"unreachable"')
    const applied = await run(['gc', '--grace', '1d', '--apply'])
    expect(applied.code).toBe(0)
    expect(applied.stdout).toContain('deleted      1 objects')
    const after = json((await run(['fsck', '--json'])).stdout)
    expect(after).toMatchObject({ ok: true, unreachable: { objects: 0 }, leftovers: { objects: 0 } })
  })

  it('fsck exits 5 naming a missing object; gc then refuses only if metadata is missing', async () => {
    const store = await openStore(join(dir.path, '.dreamdb'))
    const repo = new Repository(store)
    const { manifest } = await repo.resolve('corpus')
    const timeline = manifest.timeline!
    const [bucket] = await repo.leafBuckets(timeline)
    await store.close()
    const label = bucket!.fields.label!.cid
    const hex = Buffer.from(label.multihash.digest).toString('hex')
    await rm(join(dir.path, '.dreamdb', 'objects', 'sha2-256', hex.slice(0, 2), hex))
    const damaged = await run(['fsck'])
    expect(damaged.code).toBe(5)
    expect(damaged.stdout).toContain(`missing field ${label}`)
    expect(damaged.stdout).toContain('DAMAGED')
    const asJson = json((await run(['fsck', '--json', '--metadata-only'])).stdout)
    expect(asJson.missing.map((m: { cid: string }) => m.cid)).toEqual([label.toString()])
    const thex = Buffer.from(timeline.multihash.digest).toString('hex')
    await rm(join(dir.path, '.dreamdb', 'objects', 'sha2-256', thex.slice(0, 2), thex))
    const refused = await run(['gc', '--apply'])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain('ERR_MANIFEST_GC_REFUSED')
  })
})
