/**
 * Isolation in the CLI: a damaged ref (a body that is not a ref envelope) and a ref whose
 * manifest is not a manifest are listed by `dreamdb refs` as damaged, with their error
 * code, instead of failing the listing; `log` and `inspect` of the other refs keep working,
 * and of the damaged ones fail with a one-line typed error (exit 1).
 */
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { openStore } from '@dreamdb/cas'
import { encodeRefTarget, Repository } from '@dreamdb/manifest'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cli, tempDir } from './helpers.js'

let dir: { path: string; remove: () => Promise<void> }
const run = (args: string[]) => cli(args, { cwd: dir.path })

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
  await writeFile(join(backend, 'refs', 'broken.ref'), 'not a ref at all')
  const garbage = await store.put(new Uint8Array([0xa1, 0x61, 0x76, 0x01]), { codec: 0x71 })
  await store.createRef(
    'bad-manifest',
    encodeRefTarget({ kind: 'branch', manifest: garbage, timeline: null }),
  )
  await store.close()
})
afterAll(async () => dir.remove())

describe('a damaged ref', () => {
  it('refs --json lists it marked damaged with its code, the others as usual, exit 0', async () => {
    const result = await run(['refs', '--json'])
    expect(result.code).toBe(0)
    expect(result.stderr).toBe('')
    const out = JSON.parse(result.stdout) as { refs: Record<string, unknown>[] }
    const rows = out.refs.map((r) => [r.name, r.damaged, r.damaged ? r.code : r.records])
    expect(rows.sort()).toEqual([
      ['bad-manifest', true, 'ERR_MANIFEST_CORRUPT'],
      ['broken', true, 'ERR_CAS_REF_CORRUPT'],
      ['corpus', false, 2],
      ['corpus-v1', false, 2],
    ])
    expect(out.refs.find((r) => r.name === 'broken')!.message).toContain('broken')
  })

  it('refs prints it in the table as damaged, with the reason below', async () => {
    const result = await run(['refs'])
    expect(result.code).toBe(0)
    const lines = result.stdout.trimEnd().split('\n')
    expect(lines.find((l) => l.startsWith('broken '))).toMatch(/^broken\s+damaged\s+-\s+ERR_CAS_REF_CORRUPT$/)
    expect(lines.find((l) => l.startsWith('corpus '))).toMatch(/^corpus\s+branch\s+2\s+bafy/)
    expect(lines.some((l) => l.startsWith('broken: '))).toBe(true)
  })

  it('log and inspect of the other refs work; of the damaged ones they fail typed, exit 1', async () => {
    const logged = await run(['log', 'corpus', '--json'])
    expect(logged.code).toBe(0)
    const entries = (JSON.parse(logged.stdout) as { entries: { refs: { name: string }[] }[] }).entries
    expect(entries[0]!.refs.map((r) => r.name).sort()).toEqual(['corpus', 'corpus-v1'])
    const inspected = await run(['inspect', 'corpus-v1', '--json'])
    expect(inspected.code).toBe(0)
    for (const [name, code] of [
      ['broken', 'ERR_CAS_REF_CORRUPT'],
      ['bad-manifest', 'ERR_MANIFEST_CORRUPT'],
    ]) {
      for (const verb of ['log', 'inspect']) {
        const failed = await run([verb, name!])
        expect(failed.code).toBe(1)
        expect(failed.stderr).toMatch(new RegExp(`^dreamdb: ${code}: `))
      }
    }
  })
})
