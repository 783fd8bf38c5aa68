/**
 * What scripts and people read (issue 14), in process on a folder backend: a JSON error
 * document under --json, `inspect --verify` naming every damaged object, `diff --exit-code`,
 * short CIDs that keep `refs` and `log` within 80 columns, `--backend` in every verb's help,
 * and mistakes reported as the user's, not as a bug.
 */
import { chmod, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { InspectResult } from '../src/commands/inspect.js'
import { cli, prepareStore, tempDir } from './helpers.js'

let dir: { path: string; remove: () => Promise<void> }
const run = (args: string[], cwd = dir.path) => cli(args, { cwd })

beforeAll(async () => {
  dir = await tempDir()
  await prepareStore(dir.path)
})
afterAll(async () => dir.remove())

/** The file of an object in a folder store. */
const objectFile = (store: string, cid: string) => {
  const hex = Buffer.from(CID.parse(cid).multihash.digest).toString('hex')
  return join(store, 'objects', 'sha2-256', hex.slice(0, 2), hex)
}

describe('--json failures', () => {
  it('print one JSON error document on stdout (and the line on stderr)', async () => {
    const empty = await tempDir()
    try {
      const result = await run(['refs', '--json'], empty.path)
      expect(result.code).toBe(3)
      expect(result.stderr).toMatch(/^dreamdb: ERR_CLI_BACKEND_NOT_FOUND: /)
      const doc = JSON.parse(result.stdout)
      expect(doc).toMatchObject({
        format: 'dreamdb.error/1',
        error: { code: 'ERR_CLI_BACKEND_NOT_FOUND', exitCode: 3 },
      })
      expect(doc.error.message).toContain('No DreamDB store')
      expect(doc.error.hint).toContain('dreamdb init')
    } finally {
      await empty.remove()
    }
    const missing = await run(['inspect', 'nope', '--json'])
    expect(missing.code).toBe(3)
    expect(JSON.parse(missing.stdout).error.code).toBe('ERR_MANIFEST_REF_NOT_FOUND')
    const usage = await run(['log', 'corpus', '-n', 'zero', '--json'])
    expect(usage.code).toBe(2)
    expect(JSON.parse(usage.stdout).error.code).toBe('ERR_CLI_USAGE')
    // Without --json, stdout stays empty.
    expect((await run(['inspect', 'nope'])).stdout).toBe('')
  })
})

describe('inspect --verify', () => {
  it('reports every damaged object, not only the first, and exits 1', async () => {
    const copy = await tempDir()
    try {
      await prepareStore(copy.path)
      const store = join(copy.path, '.dreamdb')
      const before = JSON.parse(
        (await run(['inspect', 'prep-v1', '--json', '--no-splits'], copy.path)).stdout,
      )
      const data = (before as InspectResult).objects.filter((o) => o.role === 'field').map((o) => o.cid)
      expect(data.length).toBeGreaterThanOrEqual(3)
      const [corruptA, corruptB, gone] = data as [string, string, string]
      for (const cid of [corruptA, corruptB]) {
        await chmod(objectFile(store, cid), 0o644)
        await writeFile(objectFile(store, cid), 'not the bytes this CID names')
      }
      await rm(objectFile(store, gone))

      const json = await run(['inspect', 'prep-v1', '--verify', '--json', '--no-splits'], copy.path)
      expect(json.code).toBe(1)
      expect(json.stderr).toMatch(/^dreamdb: ERR_CLI_DAMAGED: 3 of \d+ objects of prep-v1 are damaged/)
      const doc = JSON.parse(json.stdout) as InspectResult // one document: the report
      expect(doc.verified!.bad.map((b) => [b.cid, b.code]).sort()).toEqual(
        [
          [corruptA, 'ERR_CAS_INTEGRITY'],
          [corruptB, 'ERR_CAS_INTEGRITY'],
          [gone, 'ERR_CAS_NOT_FOUND'],
        ].sort(),
      )
      expect(doc.verified!.objects).toBe(doc.objects.length - 3)

      const text = await run(['inspect', 'prep-v1', '--verify', '--no-splits'], copy.path)
      expect(text.code).toBe(1)
      for (const cid of [corruptA, corruptB]) expect(text.stdout).toContain(`corrupt ${cid}`)
      expect(text.stdout).toContain(`missing ${gone}`)
    } finally {
      await copy.remove()
    }
  })

  it('a whole state verifies with an empty list of bad objects', async () => {
    const result = await run(['inspect', 'prep-v1', '--verify', '--json', '--no-splits'])
    expect(result.code, result.stderr).toBe(0)
    const doc = JSON.parse(result.stdout) as InspectResult
    expect(doc.verified).toMatchObject({ objects: doc.objects.length, bad: [] })
  })
})

describe('diff --exit-code', () => {
  it('exits 1 when the states differ and 0 when they do not, like git diff --exit-code', async () => {
    const differs = await run(['diff', 'prep-v1', 'corpus', '--exit-code'])
    expect(differs.code).toBe(1)
    expect(differs.stderr).toBe('')
    expect(differs.stdout).toContain('records  +30 -0')
    const json = await run(['diff', 'prep-v1', 'corpus', '--exit-code', '--json'])
    expect(json.code).toBe(1)
    expect(JSON.parse(json.stdout)).toMatchObject({ format: 'dreamdb.diff/1', same: false })
    const same = await run(['diff', 'prep-v1', 'prep-v1', '--exit-code'])
    expect(same.code).toBe(0)
    expect(same.stdout).toContain('no differences')
    // Without the flag a difference is still success.
    expect((await run(['diff', 'prep-v1', 'corpus'])).code).toBe(0)
  })
})

describe('human output', () => {
  it('refs and log fit 80 columns with short CIDs; --json has them whole', async () => {
    const refs = await run(['refs'])
    const log = await run(['log', 'corpus'])
    for (const out of [refs, log]) {
      expect(out.code).toBe(0)
      for (const line of out.stdout.trimEnd().split('\n')) expect(line.length).toBeLessThanOrEqual(80)
    }
    const full = JSON.parse((await run(['refs', '--json'])).stdout).refs as {
      name: string
      manifest: string
    }[]
    const corpus = full.find((r) => r.name === 'corpus')!
    expect(corpus.manifest.length).toBeGreaterThan(50)
    const row = refs.stdout.split('\n').find((l) => l.startsWith('corpus '))!
    expect(row).toMatch(new RegExp(`${corpus.manifest.slice(0, 16)}$`))
    expect(row).not.toContain(corpus.manifest)
    expect(log.stdout).toContain(corpus.manifest.slice(0, 16))
    expect(log.stdout).not.toContain(corpus.manifest)
  })

  it.each([
    'init',
    'ingest',
    'refs',
    'snapshot',
    'branch',
    'fsck',
    'gc',
    'log',
    'inspect',
    'diff',
    'head',
    'export',
    'compare-refs',
    'search',
    'migrate',
    'drop-layer',
    'drop-field',
    'add-fields',
    'compact',
    'restore',
    'merge',
  ])('%s --help shows --backend', async (verb) => {
    const result = await run([verb, '--help'])
    expect(result.code).toBe(0)
    expect(result.stdout).toMatch(/^ {2}--backend <url> /m)
  })
})

describe('user mistakes are user errors, not bugs', () => {
  it('search --field on a field that is not an embedding: exit 2, naming the embedding fields', async () => {
    const result = await run(['search', 'corpus', '--field', 'label', '--like-anchor', '1'])
    expect(result.code).toBe(2)
    expect(result.stdout).toBe('')
    const lines = result.stderr.trimEnd().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^dreamdb: ERR_CLI_WRONG_FIELD_KIND: search --field 'label' is a scalar field/)
    expect(lines[0]).toContain('embedding')
    expect(lines[0]).not.toContain('a bug')
  })
})
