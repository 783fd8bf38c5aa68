/**
 * The CLI as a user runs it, in process (`main`, the binary's entry without the process
 * around it; `dist.test.ts` runs the built binary) against a folder backend prepared with
 * @dreamdb/dataset. Outputs, JSON shapes, exit codes, and one-line errors.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Dataset } from '@dreamdb/dataset'
import type { Diff, LogEntry } from '@dreamdb/manifest'
import { tableFromIPC } from 'apache-arrow'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { CompareResult } from '../src/commands/compare-refs.js'
import type { InspectResult } from '../src/commands/inspect.js'
import type { MergeResult } from '../src/commands/merge.js'
import type { RestoreResult } from '../src/commands/restore.js'
import { type CliResult, cli, LABELS, prepareStore, record, SWEEP, tempDir } from './helpers.js'

let dir: { path: string; remove: () => Promise<void> }
const run = (args: string[], env?: Record<string, string | undefined>) =>
  cli(args, { cwd: dir.path, ...(env ? { env } : {}) })
const parse = <T = Record<string, unknown>>(result: CliResult): T => {
  expect(result.stderr).toBe('')
  expect(result.code).toBe(0)
  return JSON.parse(result.stdout) as T
}
/** One line on stderr: `dreamdb: CODE: message  (hint: ...)`, and the exit code. */
const expectError = (result: CliResult, exitCode: number, code: string) => {
  expect(result.code).toBe(exitCode)
  expect(result.stdout).toBe('')
  const lines = result.stderr.trimEnd().split('\n')
  expect(lines).toHaveLength(1)
  expect(lines[0]).toMatch(new RegExp(`^dreamdb: ${code}: .+`))
  return lines[0]!
}

beforeAll(async () => {
  dir = await tempDir()
  await prepareStore(dir.path)
})
afterAll(async () => dir.remove())

describe('help and version', () => {
  it('lists every verb with examples and the exit codes', async () => {
    const result = await run(['--help'])
    expect(result.code).toBe(0)
    for (const verb of [
      'init',
      'refs',
      'snapshot',
      'branch',
      'log',
      'inspect',
      'diff',
      'head',
      'export',
      'compare-refs',
      'ingest',
      'search',
      'migrate',
      'drop-layer',
      'drop-field',
      'add-fields',
      'compact',
      'restore',
      'merge',
    ]) {
      expect(result.stdout).toMatch(new RegExp(`^  ${verb} `, 'm'))
    }
    expect(result.stdout).toContain('Examples:')
    expect(result.stdout).toMatch(/Exit codes:[\s\S]*\n {2}3 {3}not found/)
    expect(result.stdout).toContain('DREAMDB_BACKEND')
  })

  it.each([
    'init',
    'refs',
    'snapshot',
    'branch',
    'log',
    'inspect',
    'diff',
    'head',
    'export',
    'compare-refs',
    'ingest',
    'search',
    'migrate',
    'drop-layer',
    'drop-field',
    'add-fields',
    'compact',
    'restore',
    'merge',
  ])('%s --help has examples', async (verb) => {
    const result = await run([verb, '--help'])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain(`Usage: dreamdb ${verb}`)
    expect(result.stdout).toContain(`$ dreamdb ${verb}`)
  })

  it('prints the version', async () => {
    const result = await run(['--version'])
    const { version } = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'))
    expect(result).toEqual({ code: 0, stdout: `${version}\n`, stderr: '' })
  })
})

describe('JSON documents', () => {
  it('carry a format tag per verb', async () => {
    const verbs: [string, string[]][] = [
      ['refs', ['refs']],
      ['inspect', ['inspect', 'prep-v1', '--no-splits']],
      ['log', ['log', 'prep-v1']],
      ['diff', ['diff', 'prep-v1', 'corpus']],
      ['head', ['head', 'prep-v1', '-n', '1']],
      ['compare-refs', ['compare-refs', '--prefix', 'sweep/']],
    ]
    for (const [verb, args] of verbs) {
      expect(parse<{ format: string }>(await run([...args, '--json'])).format).toBe(`dreamdb.${verb}/1`)
    }
  })
})

describe('refs', () => {
  it('lists every ref with kind, manifest and records (--json)', async () => {
    const out = parse<{
      backend: string
      refs: { name: string; kind: string; manifest: string; records: number }[]
    }>(await run(['refs', '--json']))
    expect(out.backend).toBe(`file://${join(dir.path, '.dreamdb')}`)
    expect(out.refs.map((r) => [r.name, r.kind, r.records])).toEqual([
      ['corpus', 'branch', 150],
      ['prep-v1', 'snapshot', 120],
      ['prod-1', 'snapshot', 120],
      ...SWEEP.map((name) => [name, 'branch', 120]),
    ])
    for (const ref of out.refs) expect(ref.manifest).toMatch(/^bafy/)
  })

  it('filters by prefix and prints a table', async () => {
    const result = await run(['refs', 'sweep/'])
    expect(result.code).toBe(0)
    const lines = result.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^NAME\s+KIND\s+RECORDS\s+MANIFEST$/)
    expect(lines.slice(1).map((l) => l.split(/\s+/)[0])).toEqual(SWEEP)
    expect(result.stdout).not.toContain('\u001b')
  })

  it('takes the backend from DREAMDB_BACKEND, and --backend over it', async () => {
    const other = await tempDir()
    try {
      const backend = join(dir.path, '.dreamdb')
      const viaEnv = parse<{ refs: unknown[] }>(
        await cli(['refs', '--json'], { cwd: other.path, env: { DREAMDB_BACKEND: backend } }),
      )
      expect(viaEnv.refs).toHaveLength(6)
      const viaFlag = await cli(['refs', '--json', '--backend', join(other.path, 'nowhere')], {
        cwd: other.path,
        env: { DREAMDB_BACKEND: backend },
      })
      expect(viaFlag.code).toBe(3)
      expect(viaFlag.stderr).toMatch(/^dreamdb: ERR_CLI_BACKEND_NOT_FOUND: /)
      // --json: the failure is a JSON document on stdout too.
      expect(JSON.parse(viaFlag.stdout).error).toMatchObject({
        code: 'ERR_CLI_BACKEND_NOT_FOUND',
        exitCode: 3,
      })
      const before = await cli(['--backend', `file://${backend}`, 'refs', 'prep'], { cwd: other.path })
      expect(before.stdout).toContain('prep-v1')
    } finally {
      await other.remove()
    }
  })
})

describe('inspect', () => {
  it('gives a CI audit everything as JSON', async () => {
    const out = parse<InspectResult>(await run(['inspect', '--ref-name', 'prod-1', '--json']))
    expect(out.ref).toEqual({ name: 'prod-1', kind: 'snapshot' })
    expect(out.manifest).toMatch(/^bafy/)
    expect(out.stats.records).toBe(120)
    expect(out.stats.buckets).toBe(3)
    expect(out.splits).toEqual({ field: 'split', counts: { train: 90, validation: 30 } })
    expect(out.schema.fields.map((f) => f.name)).toEqual(['image', 'embedding', 'label', 'split'])
    expect(out.layers).toMatchObject([{ name: 'prediction', parent: 'embedding', records: 120, segments: 1 }])
    // The DAG back to the root: the layer, the first append, the create.
    expect(out.history.map((e: { change: { kind: string } }) => e.change.kind)).toEqual([
      'layer',
      'append',
      'create',
    ])
    expect(out.depth).toBe(3)
    expect(out.history.at(-1)!.parents).toEqual([])
    expect(out.history[0]!.manifest).toBe(out.manifest)
    // prep-v1 pins an earlier state of this history; the winning branch points at this one.
    expect(out.pointingInto.map((r: { name: string }) => r.name).sort()).toEqual(['prep-v1', SWEEP[2]])
    expect(out.referencedBy.map((r: { name: string }) => r.name)).toEqual([SWEEP[2]])
    expect(out.buckets).toHaveLength(3)
    expect(out.objects[0]).toEqual({ cid: out.manifest, role: 'manifest' })
    expect(out.verified).toBeNull()
  })

  it('reads every object back with --verify', async () => {
    const out = parse<InspectResult>(await run(['inspect', 'prep-v1', '--verify', '--no-splits', '--json']))
    expect(out.splits).toBeNull()
    expect(out.verified!.objects).toBe(out.objects.length)
    expect(out.verified!.bytes).toBeGreaterThan(0)
    expect(out.referencedBy.map((r: { name: string }) => r.name).sort()).toEqual(
      ['corpus', 'prod-1', ...SWEEP].sort(),
    )
  })

  it('prints the state for people', async () => {
    const result = await run(['inspect', '--ref-name', 'corpus'])
    expect(result.code).toBe(0)
    expect(result.stdout).toMatch(/^ref\s+corpus \(branch\)$/m)
    expect(result.stdout).toMatch(/^records\s+150 in 4 buckets/m)
    expect(result.stdout).toMatch(/^splits\s+train 113, validation 37$/m)
    expect(result.stdout).toMatch(/^schema\s+image\s+binary image/m)
    expect(result.stdout).toMatch(/^history\s+3 manifests back to the root/m)
    expect(result.stdout).toContain('<- prep-v1 (snapshot)')
    expect(result.stdout).toMatch(/^points into\s+prep-v1 \(snapshot\)$/m)
  })

  it('refuses two different refs', async () => {
    expectError(await run(['inspect', 'corpus', '--ref-name', 'prod-1']), 2, 'ERR_CLI_USAGE')
    expectError(await run(['inspect']), 2, 'ERR_CLI_USAGE')
  })

  it('names an unknown ref with a hint', async () => {
    const line = expectError(await run(['inspect', '--ref-name', 'nope']), 3, 'ERR_MANIFEST_REF_NOT_FOUND')
    expect(line).toBe(
      `dreamdb: ERR_MANIFEST_REF_NOT_FOUND: No dataset, branch or snapshot named 'nope' in file://${join(dir.path, '.dreamdb')}  (hint: dreamdb refs lists them)`,
    )
  })
})

describe('log and diff', () => {
  it('walks the history newest first', async () => {
    const out = parse<{ ref: string; entries: LogEntry[] }>(
      await run(['log', '--ref-name', 'corpus', '--json']),
    )
    expect(out.entries.map((e) => [e.change.kind, e.records])).toEqual([
      ['append', 150],
      ['append', 120],
      ['create', 0],
    ])
    expect(out.entries[1]!.message).toBe('first 120')
    expect(out.entries[1]!.refs).toEqual([{ name: 'prep-v1', kind: 'snapshot' }])
    const limited = parse<{ entries: unknown[] }>(await run(['log', 'corpus', '-n', '1', '--json']))
    expect(limited.entries).toHaveLength(1)
    const text = await run(['log', '--ref-name', 'corpus'])
    expect(text.stdout).toContain('append +30 records in 1 bucket')
    expectError(await run(['log', 'corpus', '-n', 'zero']), 2, 'ERR_CLI_USAGE')
  })

  it('diffs two states', async () => {
    const appended = parse<Diff>(await run(['diff', 'prep-v1', 'corpus', '--json']))
    expect(appended.records).toEqual({ added: 30, removed: 0 })
    expect(appended.buckets).toEqual({ added: 1, removed: 0 })
    const layered = parse<Diff>(await run(['diff', 'prep-v1', 'prod-1', '--json']))
    expect(layered.layers.added).toEqual(['prediction'])
    expect(layered.records).toEqual({ added: 0, removed: 0 })
    const text = await run(['diff', 'prep-v1', 'prod-1'])
    expect(text.stdout).toMatch(/^layers\s+\+prediction$/m)
    const same = await run(['diff', 'prod-1', SWEEP[2]!])
    expect(same.stdout).toContain('no differences')
  })

  it('drop-layer takes a layer off a branch; log and diff show it', async () => {
    parse(await run(['branch', 'dropped/prediction', '--from', 'prod-1', '--json']))
    const dropped = parse<{ format: string; layer: string; records: number; from: string; manifest: string }>(
      await run(['drop-layer', 'dropped/prediction', '--layer', 'prediction', '--json']),
    )
    expect(dropped).toMatchObject({ format: 'dreamdb.drop-layer/1', layer: 'prediction' })
    expect(dropped.records).toBeGreaterThan(0)
    const text = await run(['log', 'dropped/prediction', '-n', '1'])
    expect(text.stdout).toContain(`drop layer 'prediction' (${dropped.records} values)`)
    const diff = parse<Diff>(await run(['diff', 'prod-1', 'dropped/prediction', '--json']))
    expect(diff.layers.removed).toEqual(['prediction'])
    // prod-1 (a snapshot) keeps it.
    expect(parse<Diff>(await run(['diff', 'prod-1', 'prod-1', '--json'])).layers.removed).toEqual([])
  })
})

describe('drop-field', () => {
  it('takes a base field off a branch; head, log and diff show it; the snapshot keeps it', async () => {
    parse(await run(['branch', 'no-images', '--from', 'corpus', '--json']))
    const dropped = parse<{
      format: string
      field: string
      buckets: number
      bytes: number
      from: string
      manifest: string
    }>(await run(['drop-field', 'no-images', '--field', 'image', '--json']))
    expect(dropped).toMatchObject({ format: 'dreamdb.drop-field/1', field: 'image', buckets: 4 })
    expect(dropped.bytes).toBeGreaterThan(0)
    expect(dropped.manifest).not.toBe(dropped.from)
    const head = parse<{ fields: string[]; records: Record<string, unknown>[] }>(
      await run(['head', 'no-images', '-n', '200', '--json']),
    )
    expect(head.fields).toEqual(['embedding', 'label', 'split'])
    expect(head.records).toHaveLength(150)
    expect(head.records[0]).not.toHaveProperty('image')
    expect((await run(['log', 'no-images', '-n', '1'])).stdout).toContain("drop field 'image' from 4 buckets")
    const diff = parse<Diff>(await run(['diff', 'corpus', 'no-images', '--json']))
    expect(diff.fields.removed).toEqual(['image'])
    expect(diff.records).toEqual({ added: 0, removed: 0 })
    const text = await run(['drop-field', 'no-images', '--field', 'label', '-m', 'labels elsewhere'])
    expect(text.stdout).toMatch(/^dropped field 'label' \(.+ in 4 buckets\) from no-images$/m)
    // The branch it came from, and the snapshot, keep their images.
    const images = parse<{ fields: string[] }>(await run(['head', 'prep-v1', '-n', '1', '--json']))
    expect(images.fields).toContain('image')
  })
})

describe('add-fields', () => {
  it('adds a base field to a branch; older records read it as null, new appends fill it', async () => {
    parse(await run(['branch', 'captioned', '--from', 'corpus', '--json']))
    const added = parse<{ format: string; added: string[]; from: string; manifest: string }>(
      await run([
        'add-fields',
        'captioned',
        '--schema',
        '[{"name":"caption","family":"scalar","kind":"string"}]',
        '-m',
        'captions from now on',
        '--json',
      ]),
    )
    expect(added).toMatchObject({ format: 'dreamdb.add-fields/1', added: ['caption'] })
    const log = await run(['log', 'captioned', '-n', '1'])
    expect(log.stdout).toContain('schema: added caption')
    expect(log.stdout).toContain('captions from now on')
    const ds = await Dataset.openRef('captioned', { backend: join(dir.path, '.dreamdb') })
    await ds.appendMany([{ ...record(150), caption: 'a new one' }])
    await ds.repository.store.close()
    const head = parse<{ fields: string[]; records: Record<string, unknown>[] }>(
      await run(['head', 'captioned', '-n', '200', '--fields', 'label,caption', '--json']),
    )
    expect(head.records.map((r) => r.caption)).toEqual([...new Array(150).fill(null), 'a new one'])
    // The branch it came from has no such field.
    const corpus = parse<{ fields: string[] }>(await run(['head', 'corpus', '-n', '1', '--json']))
    expect(corpus.fields).not.toContain('caption')
  })
})

describe('merge', () => {
  it("takes a sweep winner's layer onto a branch; a second run's layer on top is a conflict (exit 4)", async () => {
    parse(await run(['branch', 'merged-main', '--from', 'corpus', '--json']))
    const out = parse<MergeResult & { format: string }>(
      await run(['merge', 'merged-main', '--from', SWEEP[2]!, '--json']),
    )
    expect(out).toMatchObject({ format: 'dreamdb.merge/1', merged: true, records: 0, layers: ['prediction'] })
    const log = parse<{ entries: LogEntry[] }>(await run(['log', 'merged-main', '-n', '1', '--json']))
    expect(log.entries[0]!.parents).toEqual([out.previous, out.fromManifest])
    expect((await run(['log', 'merged-main', '-n', '1'])).stdout).toContain('layers prediction')
    const head = parse<{ records: Record<string, unknown>[] }>(
      await run(['head', 'merged-main', '-n', '200', '--fields', 'label,prediction', '--json']),
    )
    const winner = parse<{ records: Record<string, unknown>[] }>(
      await run(['head', SWEEP[2]!, '-n', '200', '--fields', 'label,prediction', '--json']),
    )
    expect(head.records.slice(0, 120)).toEqual(winner.records)
    expect(head.records.slice(120).every((r) => r.prediction === null)).toBe(true)
    expect((await run(['merge', 'merged-main', '--from', SWEEP[2]!])).stdout).toContain('nothing to merge')
    expectError(await run(['merge', 'merged-main', '--from', SWEEP[0]!]), 4, 'ERR_DATASET_MERGE_CONFLICT')
    // The store with its two-parent manifest is whole: fsck reads every object it reaches.
    const fsck = await run(['fsck'])
    expect(fsck.code).toBe(0)
    expect(fsck.stdout).toContain('ok: the store is whole')
  })
})

describe('restore', () => {
  it('brings a branch back to a snapshot in one commit; log shows both; a no-op when already there', async () => {
    parse(await run(['branch', 'rolled-back', '--from', 'corpus', '--json']))
    const prep = parse<InspectResult>(await run(['inspect', 'prep-v1', '--no-splits', '--json']))
    const out = parse<RestoreResult & { format: string }>(
      await run(['restore', 'rolled-back', '--from', 'prep-v1', '-m', 'take back the last 30', '--json']),
    )
    expect(out).toMatchObject({
      format: 'dreamdb.restore/1',
      from: 'prep-v1',
      fromManifest: prep.manifest,
      restored: true,
      records: 120,
    })
    const log = parse<{ entries: LogEntry[] }>(await run(['log', 'rolled-back', '-n', '2', '--json']))
    expect(log.entries.map((e) => e.change.kind)).toEqual(['restore', 'append'])
    expect((await run(['log', 'rolled-back', '-n', '1'])).stdout).toContain(
      `restore the state of ${prep.manifest.slice(0, 16)}`,
    )
    const same = parse<{ records: unknown[] }>(await run(['head', 'rolled-back', '-n', '500', '--json']))
    expect(same.records).toEqual(
      parse<{ records: unknown[] }>(await run(['head', 'prep-v1', '-n', '500', '--json'])).records,
    )
    // Already there: nothing written. Back again, by the manifest CID from before.
    expect((await run(['restore', 'rolled-back', '--from', 'prep-v1'])).stdout).toContain(
      'nothing to restore',
    )
    const again = parse<{ records: number }>(
      await run(['restore', 'rolled-back', '--from', out.previous, '--json']),
    )
    expect(again.records).toBe(150)
  })
})

describe('compact', () => {
  it('merges the small buckets of a branch, records unchanged; inspect suggests it; the source keeps its buckets', async () => {
    // 'corpus' holds 150 records in 4 buckets; 16 one-record appends make 20 on the branch.
    const ds = await Dataset.openRef('corpus', { backend: join(dir.path, '.dreamdb') })
    const tiny = await ds.branch('tiny')
    for (let i = 0; i < 16; i++) await tiny.appendMany([record(150 + i)])
    await ds.repository.store.close()
    const inspected = await run(['inspect', 'tiny', '--no-splits'])
    expect(inspected.stdout).toContain('166 in 20 buckets')
    expect(inspected.stdout).toContain('8 records a bucket on average: dreamdb compact tiny merges them')
    const records = async (ref: string) =>
      parse<{ records: unknown[] }>(await run(['head', ref, '-n', '500', '--json'])).records
    const before = await records('tiny')
    const out = parse<{
      format: string
      buckets: { before: number; after: number }
      commits: number
      records: number
      manifest: string
      from: string
    }>(await run(['compact', 'tiny', '--json']))
    expect(out).toMatchObject({
      format: 'dreamdb.compact/1',
      buckets: { before: 20, after: 1 },
      commits: 1,
      records: 166,
    })
    expect(out.manifest).not.toBe(out.from)
    expect(await records('tiny')).toEqual(before)
    expect((await run(['inspect', 'tiny', '--no-splits'])).stdout).not.toContain('dreamdb compact')
    // The branch it came from is untouched.
    expect(
      parse<InspectResult>(await run(['inspect', 'corpus', '--no-splits', '--json'])).stats.buckets,
    ).toBe(4)
    // Nothing left to merge.
    const again = parse<{ manifest: string | null; commits: number }>(
      await run(['compact', 'tiny', '--json']),
    )
    expect(again).toMatchObject({ manifest: null, commits: 0 })
    expect((await run(['compact', '--ref-name', 'tiny'])).stdout).toContain('nothing to compact on tiny')
  })
})

describe('head', () => {
  it('prints the first records, binary as byte counts', async () => {
    const out = parse<{ records: Record<string, unknown>[]; fields: string[] }>(
      await run(['head', '--ref-name', 'prod-1', '-n', '3', '--json']),
    )
    expect(out.fields).toEqual(['image', 'embedding', 'label', 'split', 'prediction'])
    expect(out.records).toHaveLength(3)
    expect(out.records[0]).toMatchObject({
      image: { bytes: 10 },
      embedding: [0, 0, 1, -1],
      label: 'cat',
      split: 'train',
      prediction: 'wrong',
    })
    expect(out.records[1]).toMatchObject({ image: { bytes: 11 }, label: 'dog', prediction: 'dog' })
    expect(out.records[0]!._anchor).toMatch(/^\d+$/)
    const text = await run(['head', 'prod-1', '-n', '2', '--fields', 'image,label'])
    const lines = text.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^_anchor\s+image\s+label$/)
    expect(lines[1]).toMatch(/<10 bytes>\s+cat$/)
    expect(lines).toHaveLength(3)
  })

  it('names an unknown field', async () => {
    const line = expectError(
      await run(['head', 'corpus', '--fields', 'label,nope']),
      3,
      'ERR_DATASET_UNKNOWN_FIELD',
    )
    expect(line).toContain("'nope'")
    expect(line).toContain('hint: dreamdb inspect')
  })
})

describe('export', () => {
  it('writes JSON lines with binary as base64', async () => {
    const out = join(dir.path, 'corpus.jsonl')
    const result = await run(['export', '--ref-name', 'corpus', '--format', 'jsonl', '--out', out])
    expect(result.code).toBe(0)
    expect(result.stdout).toContain('exported 150 records')
    const lines = (await readFile(out, 'utf8')).trimEnd().split('\n')
    expect(lines).toHaveLength(150)
    const first = JSON.parse(lines[0]!)
    expect(Object.keys(first)).toEqual(['_anchor', 'image', 'embedding', 'label', 'split'])
    expect(Buffer.from(first.image, 'base64')).toEqual(Buffer.alloc(10, 0))
    expect(JSON.parse(lines[149]!).label).toBe(LABELS[149 % 4])
  })

  it('writes an Arrow IPC stream that reads back (dictionaries across batches)', async () => {
    const out = join(dir.path, 'prod.arrows')
    const result = await run([
      'export',
      'prod-1',
      '--format',
      'arrow',
      '--out',
      out,
      '--batch-size',
      '7',
      '--json',
    ])
    const summary = parse<Record<string, unknown>>(result)
    expect(summary).toMatchObject({
      format: 'dreamdb.export/1',
      ref: 'prod-1',
      fileFormat: 'arrow',
      records: 120,
      out,
    })
    const table = tableFromIPC(await readFile(out))
    expect(table.numRows).toBe(120)
    expect(table.schema.fields.map((f) => f.name)).toEqual([
      '_anchor',
      'image',
      'embedding',
      'label',
      'split',
      'prediction',
    ])
    const labels = table.getChild('label')!.toArray()
    expect(Array.from({ length: 120 }, (_, i) => labels[i])).toEqual(
      Array.from({ length: 120 }, (_, i) => LABELS[i % 4]),
    )
    expect((table.getChild('image')!.get(5) as Uint8Array).byteLength).toBe(15)
  })

  it('streams to stdout with --out -', async () => {
    const result = await run(['export', 'prep-v1', '--format', 'jsonl', '--fields', 'label', '--out', '-'])
    expect(result.code).toBe(0)
    const lines = result.stdout.trimEnd().split('\n')
    expect(lines).toHaveLength(120)
    expect(Object.keys(JSON.parse(lines[0]!))).toEqual(['_anchor', 'label'])
  })

  it('refuses to replace a file without --force, and bad flags', async () => {
    const out = join(dir.path, 'exists.jsonl')
    await writeFile(out, 'keep me')
    expectError(
      await run(['export', 'corpus', '--format', 'jsonl', '--out', out]),
      4,
      'ERR_CLI_OUTPUT_EXISTS',
    )
    expect(await readFile(out, 'utf8')).toBe('keep me')
    expect((await run(['export', 'corpus', '--format', 'jsonl', '--out', out, '--force'])).code).toBe(0)
    expectError(await run(['export', 'corpus', '--out', out]), 2, 'ERR_CLI_USAGE')
    expectError(await run(['export', 'corpus', '--format', 'csv', '--out', out]), 2, 'ERR_CLI_USAGE')
    expectError(
      await run(['export', 'corpus', '--format', 'jsonl', '--out', join(dir.path, 'no', 'x')]),
      3,
      'ERR_CLI_FILE_NOT_FOUND',
    )
  })
})

describe('compare-refs', () => {
  const expected = (a: number, b: number) => {
    let same = 0
    for (let i = 0; i < 120; i++) if ((i % (a + 2) === 0) === (i % (b + 2) === 0)) same++
    return same / 120
  }

  it('gives the matrix, refs and counts as JSON', async () => {
    const out = parse<CompareResult>(
      await run(['compare-refs', '--refs', SWEEP.join(','), '--field', 'prediction', '--json']),
    )
    expect(out.field).toBe('prediction')
    expect(out.refs).toEqual(SWEEP)
    expect(out.counts).toEqual([120, 120, 120])
    expect(out.records).toBe(120)
    expect(out.overlap).toEqual(SWEEP.map(() => SWEEP.map(() => 120)))
    for (let i = 0; i < 3; i++) {
      for (let j = 0; j < 3; j++) expect(out.agreement[i]![j]).toBeCloseTo(i === j ? 1 : expected(i, j), 10)
    }
  })

  it('prints a plain matrix that fits 80 columns in a pipe', async () => {
    const result = await run(['compare-refs', '--prefix', 'sweep/'])
    expect(result.code).toBe(0)
    expect(result.stdout).not.toContain('\u001b')
    const lines = result.stdout.trimEnd().split('\n')
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(80)
    expect(lines[0]).toBe("'prediction' agreement across 3 refs")
    // Rows are keyed and named by what differs between the refs.
    expect(result.stdout).toMatch(/^A lr0\.001\s+— {2}/m)
    expect(result.stdout).toContain(`${Math.floor(expected(0, 1) * 100)}`)
    for (const ref of SWEEP) expect(result.stdout).toContain(ref)
  })

  it('rejects contradictory or incomplete flags and unknown names', async () => {
    expectError(await run(['compare-refs', '--refs', 'a,b', '--prefix', 'sweep/']), 2, 'ERR_CLI_USAGE')
    expectError(await run(['compare-refs', '--refs', SWEEP[0]!]), 2, 'ERR_CLI_USAGE')
    expectError(await run(['compare-refs']), 2, 'ERR_CLI_USAGE')
    expectError(await run(['compare-refs', '--refs', `${SWEEP[0]},nope`]), 3, 'ERR_MANIFEST_REF_NOT_FOUND')
    expectError(
      await run(['compare-refs', '--refs', SWEEP.join(','), '--field', 'nope']),
      3,
      'ERR_DATASET_UNKNOWN_FIELD',
    )
  })
})

describe('writes and their errors', () => {
  it('init, snapshot and branch, with conflicts and bad input', async () => {
    const w = await tempDir()
    const at = (args: string[]) => cli(args, { cwd: w.path })
    try {
      const schema = JSON.stringify([{ name: 'label', family: 'scalar', kind: 'categorical' }])
      const created = parse<{ manifest: string; schema: { fields: unknown[] } }>(
        await at(['init', 'ds', '--schema', schema, '--json']),
      )
      expect(created).toMatchObject({
        name: 'ds',
        kind: 'branch',
        backend: `file://${join(w.path, '.dreamdb')}`,
      })
      expect(created.schema.fields).toEqual([{ name: 'label', family: 'scalar', kind: 'categorical' }])
      await writeFile(
        join(w.path, 'schema.json'),
        JSON.stringify({ fields: [{ name: 'x', family: 'embedding', dim: 8 }] }),
      )
      expect((await at(['init', 'ds2', '--schema', 'schema.json'])).stdout).toContain(
        "created dataset 'ds2' with 1 field",
      )

      expectError(await at(['init', 'ds', '--schema', schema]), 4, 'ERR_MANIFEST_REF_EXISTS')
      expectError(await at(['init', 'ds3', '--schema', '{"fields": [']), 2, 'ERR_CLI_USAGE')
      expectError(await at(['init', 'ds3', '--schema', 'missing.json']), 3, 'ERR_CLI_FILE_NOT_FOUND')
      expectError(
        await at(['init', 'ds3', '--schema', '[{"name":"x","family":"scalar","kind":"complex"}]']),
        1,
        'ERR_MANIFEST_INVALID_SCHEMA',
      )
      expectError(await at(['init', 'ds3']), 2, 'ERR_CLI_USAGE')

      const snap = parse<Record<string, unknown>>(await at(['snapshot', 'v1', '--from', 'ds', '--json']))
      expect(snap).toMatchObject({ label: 'v1', kind: 'snapshot', from: 'ds', manifest: created.manifest })
      expect((await at(['snapshot', 'v1', '--from', 'ds'])).code).toBe(0) // same label, same state
      expectError(await at(['snapshot', 'v1', '--from', 'ds2']), 4, 'ERR_MANIFEST_LABEL_TAKEN')
      expectError(await at(['snapshot', 'v2', '--from', 'nope']), 3, 'ERR_MANIFEST_REF_NOT_FOUND')

      const branched = parse<Record<string, unknown>>(await at(['branch', 'exp/a', '--from', 'v1', '--json']))
      expect(branched).toMatchObject({ name: 'exp/a', kind: 'branch', manifest: created.manifest })
      // A manifest CID works wherever a ref does.
      expect((await at(['branch', 'exp/b', '--from', created.manifest])).code).toBe(0)
      expectError(await at(['branch', 'exp/a', '--from', 'ds']), 4, 'ERR_MANIFEST_REF_EXISTS')
      expectError(await at(['branch', '_secret', '--from', 'ds']), 1, 'ERR_MANIFEST_INVALID_REF_NAME')
      expectError(await at(['branch', 'exp/c']), 2, 'ERR_CLI_USAGE')

      const refs = parse<{ refs: { name: string }[] }>(await at(['refs', '--json']))
      expect(refs.refs.map((r) => r.name)).toEqual(['ds', 'ds2', 'exp/a', 'exp/b', 'v1'])
      const empty = await at(['head', 'ds'])
      expect(empty.stdout).toBe('ds has no records\n')
    } finally {
      await w.remove()
    }
  })

  it('usage errors are one line with exit code 2', async () => {
    const unknownVerb = expectError(await run(['inspekt']), 2, 'ERR_CLI_USAGE')
    expect(unknownVerb).toContain("unknown command 'inspekt'")
    expect(unknownVerb).toContain('inspect')
    const unknownOption = expectError(await run(['refs', '--colour']), 2, 'ERR_CLI_USAGE')
    expect(unknownOption).toContain('hint: dreamdb refs --help')
    expectError(await run(['--backend', 'http://', 'refs']), 1, 'ERR_CAS_INVALID_URL')
  })

  it('with no verb, prints help to stderr and exits 2', async () => {
    const result = await run([])
    expect(result.code).toBe(2)
    expect(result.stdout).toBe('')
    expect(result.stderr).toContain('Usage: dreamdb')
  })
})
