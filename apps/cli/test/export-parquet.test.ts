/**
 * `dreamdb export --format parquet`, read back by real Parquet readers: parquet-wasm
 * (arrow-rs) always, and pyarrow: the README's test command passes the Python suites' venv
 * as DREAMDB_TEST_PYTHON (a pyarrow missing there fails the test); run alone, the
 * benchmarks' venv (tools/python-env.sh) if it is there. Every value is compared with what
 * the dataset itself yields: `_anchor`, images byte for byte, float32 embeddings,
 * categorical labels, a layer; across many row groups; and real PNG digits ingested from
 * Hugging Face shards.
 */
import { execFileSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, openAsBlob } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { Dataset } from '@dreamdb/dataset'
import { type Table, tableFromIPC } from 'apache-arrow'
import * as parquet from 'parquet-wasm'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type CliResult, cli, LABELS, prepareStore, record, spawnCli, tempDir } from './helpers.js'
import { writeSplit } from './shards.js'

let dir: { path: string; remove: () => Promise<void> }
let backend: string
const run = (args: string[]) => cli(args, { cwd: dir.path })
const ok = (result: CliResult) => {
  expect(result.code, result.stderr).toBe(0)
  return result
}
const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex')

/** A Parquet file as an Arrow table, read by parquet-wasm (arrow-rs), with its file metadata. */
async function readParquetFile(path: string) {
  const table = tableFromIPC(parquet.readParquet(await readFile(path)).intoIPCStream())
  const file = await parquet.ParquetFile.fromFile(await openAsBlob(path))
  const meta = file.metadata()
  const info = {
    rowGroups: meta.numRowGroups(),
    rows: meta.fileMetadata().numRows(),
    keyValue: Object.fromEntries(meta.fileMetadata().keyValueMetadata()) as Record<string, string>,
    createdBy: meta.fileMetadata().createdBy(),
  }
  file.free()
  return { table, info }
}

/** Every record of a ref as the dataset yields it, keyed by anchor. */
async function truth(ref: string) {
  const ds = await Dataset.openRef(ref, { backend })
  const rows = new Map<bigint, Record<string, unknown>>()
  try {
    const fields = [...ds.manifest.schema.fields, ...ds.manifest.layers].map((f) => f.name)
    for await (const batch of ds.iterArrowBatches({ fields, batchSize: 1000 })) {
      for (let i = 0; i < batch.numRows; i++) {
        const row: Record<string, unknown> = {}
        for (const field of batch.schema.fields) {
          const value = batch.getChild(field.name)!.get(i)
          row[field.name] =
            value instanceof Uint8Array
              ? Uint8Array.from(value)
              : typeof (value as { toArray?: unknown })?.toArray === 'function'
                ? Array.from((value as { toArray(): Float32Array }).toArray())
                : value
        }
        rows.set(row._anchor as bigint, row)
      }
    }
    return { rows, manifest: ds.currentManifest() }
  } finally {
    await ds.repository.store.close()
  }
}

/** The table's rows equal the dataset's, field by field (images byte for byte, vectors bit for bit). */
function expectSameRows(table: Table, expected: Map<bigint, Record<string, unknown>>, fields: string[]) {
  expect(table.numRows).toBe(expected.size)
  const seen = new Set<bigint>()
  for (let i = 0; i < table.numRows; i++) {
    const anchor = table.getChild('_anchor')!.get(i) as bigint
    expect(typeof anchor).toBe('bigint')
    expect(seen.has(anchor)).toBe(false)
    seen.add(anchor)
    const want = expected.get(anchor)
    expect(want, `anchor ${anchor}`).toBeDefined()
    for (const name of fields) {
      const got = table.getChild(name)!.get(i)
      const w = want![name]
      if (w instanceof Uint8Array) {
        expect(sha(got as Uint8Array)).toBe(sha(w))
      } else if (Array.isArray(w)) {
        const vector = (got as { toArray(): Float32Array }).toArray()
        expect(vector).toBeInstanceOf(Float32Array)
        expect(Array.from(vector)).toEqual(w)
      } else {
        expect(got).toEqual(w)
      }
    }
  }
}

beforeAll(async () => {
  dir = await tempDir()
  backend = (await prepareStore(dir.path)).backend
})
afterAll(async () => dir?.remove())

describe('export --format parquet', () => {
  it('writes every record and layer with their Arrow types, one row group per --batch-size records', async () => {
    const out = join(dir.path, 'prod-1.parquet')
    const result = ok(
      await run(['export', 'prod-1', '--format', 'parquet', '--out', out, '--batch-size', '7', '--json']),
    )
    const { table, info } = await readParquetFile(out)
    const { rows, manifest } = await truth('prod-1')
    expect(JSON.parse(result.stdout)).toMatchObject({
      format: 'dreamdb.export/1',
      ref: 'prod-1',
      fileFormat: 'parquet',
      records: 120,
      manifest,
      out,
    })
    const fields = ['image', 'embedding', 'label', 'split', 'prediction']
    expect(table.schema.fields.map((f) => f.name)).toEqual(['_anchor', ...fields])
    expect(table.schema.fields.map((f) => String(f.type))).toEqual([
      'Uint64',
      'Binary',
      'FixedSizeList[4]<Float32>',
      'Dictionary<Int32, Utf8>',
      'Dictionary<Int32, Utf8>',
      'Dictionary<Int32, Utf8>',
    ])
    expectSameRows(table, rows, fields)
    // The fixtures themselves, in append order: record i has 10+i bytes of i, and its label.
    for (let i = 0; i < 120; i++) {
      const r = record(i)
      expect(sha(table.getChild('image')!.get(i) as Uint8Array)).toBe(sha(r.image))
      expect(
        Array.from((table.getChild('embedding')!.get(i) as { toArray(): Float32Array }).toArray()),
      ).toEqual(r.embedding)
      expect(table.getChild('label')!.get(i)).toBe(LABELS[i % 4])
    }
    expect(info.rows).toBe(120)
    expect(info.rowGroups).toBe(Math.ceil(120 / 7))
    expect(info.keyValue['dreamdb.ref']).toBe('prod-1')
    expect(info.keyValue['dreamdb.manifest']).toBe(manifest)
    expect(info.keyValue['ARROW:schema']).toBeDefined()
    // Written under a temporary name and renamed: nothing else is left in the folder.
    expect((await readdir(dir.path)).filter((f) => f.includes('.partial'))).toEqual([])
  })

  it('exports real images ingested from Hugging Face shards, with zstd, and to stdout', async () => {
    const root = join(dir.path, 'hf')
    const fixtures = await writeSplit(root, { split: 'train', shards: 2, rows: 40, first: 0 })
    ok(
      await run(['ingest', '--root', root, '--dataset-name', 'digits', '--splits', 'train', '--no-progress']),
    )
    const out = join(dir.path, 'digits.parquet')
    ok(
      await run([
        'export',
        'digits',
        '--format',
        'parquet',
        '--compression',
        'zstd',
        '--batch-size',
        '32',
        '--out',
        out,
      ]),
    )
    const { table, info } = await readParquetFile(out)
    const { rows } = await truth('digits')
    expectSameRows(table, rows, ['image', 'embedding', 'label', 'split'])
    expect(info.rowGroups).toBe(3)
    const byImage = new Map(fixtures.map((f) => [sha(f.image), f]))
    for (let i = 0; i < table.numRows; i++) {
      const fixture = byImage.get(sha(table.getChild('image')!.get(i) as Uint8Array))
      expect(fixture).toBeDefined()
      expect(table.getChild('label')!.get(i)).toBe(fixture!.label)
      const vector = (table.getChild('embedding')!.get(i) as { toArray(): Float32Array }).toArray()
      expect(Array.from(vector)).toEqual(Array.from(Float32Array.from(fixture!.embedding)))
      byImage.delete(sha(table.getChild('image')!.get(i) as Uint8Array))
    }
    expect(byImage.size).toBe(0)

    // `--out -` in a pipe: the same file on stdout.
    const piped = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = []
      const child = spawnCli(['export', 'digits', '--format', 'parquet', '--fields', 'label', '--out', '-'], {
        cwd: dir.path,
      })
      child.stdin.end()
      child.stdout.on('data', (d: Buffer) => chunks.push(d))
      child.on('error', reject)
      child.on('close', (code) =>
        code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`exit ${code}`)),
      )
    })
    const fromPipe = tableFromIPC(parquet.readParquet(piped).intoIPCStream())
    expect(fromPipe.schema.fields.map((f) => f.name)).toEqual(['_anchor', 'label'])
    expect(fromPipe.numRows).toBe(80)
  })

  it('writes the schema and no rows for an empty dataset, and refuses bad flags', async () => {
    ok(
      await run([
        'init',
        'empty',
        '--schema',
        '[{"name":"label","family":"scalar","kind":"categorical"},{"name":"v","family":"embedding","dim":3}]',
      ]),
    )
    const out = join(dir.path, 'empty.parquet')
    ok(await run(['export', 'empty', '--format', 'parquet', '--out', out]))
    const { table } = await readParquetFile(out)
    expect(table.numRows).toBe(0)
    expect(table.schema.fields.map((f) => `${f.name}:${f.type}`)).toEqual([
      '_anchor:Uint64',
      'label:Dictionary<Int32, Utf8>',
      'v:FixedSizeList[3]<Float32>',
    ])
    const wrong = await run(['export', 'prod-1', '--format', 'jsonl', '--compression', 'zstd', '--out', '-'])
    expect(wrong.code).toBe(2)
    expect(wrong.stderr).toMatch(/^dreamdb: ERR_CLI_USAGE: --compression is for --format parquet/)
  })
})

function pythonWithPyarrow(): string | undefined {
  const given = process.env.DREAMDB_TEST_PYTHON
  // Given by the test command: its pyarrow must be there, or the check would skip unseen.
  if (given !== undefined && given !== '') {
    execFileSync(given, ['-c', 'import pyarrow.parquet'], { stdio: 'inherit' })
    return given
  }
  const candidates = [
    join(process.env.DREAMDB_CACHE ?? join(homedir(), '.cache', 'dreamdb'), 'venv', 'bin', 'python'),
  ]
  for (const python of candidates) {
    if (python === undefined || !existsSync(python)) continue
    try {
      execFileSync(python, ['-c', 'import pyarrow.parquet'], { stdio: 'ignore' })
      return python
    } catch {}
  }
  return undefined
}

const python = pythonWithPyarrow()

describe.skipIf(python === undefined)('export --format parquet, read by pyarrow', () => {
  it('reads back the same anchors, images, vectors and labels', async () => {
    const out = join(dir.path, 'prod-1-pyarrow.parquet')
    ok(await run(['export', 'prod-1', '--format', 'parquet', '--out', out, '--batch-size', '50']))
    const script = `
import hashlib, json, sys
import pyarrow.parquet as pq
f = pq.ParquetFile(sys.argv[1])
t = f.read()
rows = []
for r in t.to_pylist():
    rows.append({"anchor": str(r["_anchor"]), "image": hashlib.sha256(r["image"]).hexdigest(),
                 "embedding": r["embedding"], "label": r["label"], "split": r["split"],
                 "prediction": r["prediction"]})
print(json.dumps({"types": [str(x.type) for x in t.schema], "row_groups": f.num_row_groups,
                  "meta": {k.decode(): v.decode() for k, v in f.metadata.metadata.items() if k.startswith(b"dreamdb")},
                  "rows": rows}))
`
    const read = JSON.parse(
      execFileSync(python!, ['-c', script, out], { encoding: 'utf8', maxBuffer: 1 << 26 }),
    )
    expect(read.types).toEqual([
      'uint64',
      'binary',
      'fixed_size_list<item: float not null>[4]',
      'dictionary<values=string, indices=int32, ordered=0>',
      'dictionary<values=string, indices=int32, ordered=0>',
      'dictionary<values=string, indices=int32, ordered=0>',
    ])
    expect(read.row_groups).toBe(3)
    const { rows, manifest } = await truth('prod-1')
    expect(read.meta).toEqual({ 'dreamdb.ref': 'prod-1', 'dreamdb.manifest': manifest })
    expect(read.rows).toHaveLength(rows.size)
    for (const r of read.rows as Record<string, unknown>[]) {
      const want = rows.get(BigInt(r.anchor as string))!
      expect(r.image).toBe(sha(want.image as Uint8Array))
      expect(r.embedding).toEqual(want.embedding)
      expect(r.label).toBe(want.label)
      expect(r.split).toBe(want.split)
      expect(r.prediction).toBe(want.prediction)
    }
  })
})
