/**
 * The viewer's 1-million-record store, built once into the cache folder and reused: the
 * browser test on 1M records (ui-browser.e2e.ts) and `pnpm bench ui` open the same one.
 * Records as a user's ingest makes them (appends of 65 536, default bucket sizing), then one
 * sweep branch per run with a `prediction` layer over every record.
 */
import { existsSync } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { Dataset } from '@dreamdb/dataset'

const SIDE = 16
export const BIG_RUNS = ['sweep/a', 'sweep/b', 'sweep/c', 'sweep/d']

/** A 16x16 grey PGM whose pattern depends on i (distinct images, ~270 bytes each). */
export function bigPgm(i: number): Uint8Array {
  const header = new TextEncoder().encode(`P5\n${SIDE} ${SIDE}\n255\n`)
  const out = new Uint8Array(header.length + SIDE * SIDE)
  out.set(header)
  for (let p = 0; p < SIDE * SIDE; p++) out[header.length + p] = ((p * (1 + (i % 13)) + i) * 37) & 255
  return out
}

/** The cache folder of the store of `records` records (its store in `store/`). */
export function bigStoreDir(records: number): string {
  const cache =
    process.env.DREAMDB_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'dreamdb')
  return join(cache, 'bench', `ui-${records}`)
}

/** The store, built if its stamp is missing or differs; `builtSeconds` when it was built now. */
export async function ensureBigStore(
  records: number,
  log: (line: string) => void = console.log,
): Promise<{ work: string; store: string; builtSeconds?: number }> {
  const work = bigStoreDir(records)
  const store = join(work, 'store')
  const stamp = join(work, 'ready.json')
  const want = { records, generator: 'pgm16/v1', appends: 65_536, runs: BIG_RUNS }
  if (existsSync(stamp) && JSON.stringify(JSON.parse(await readFile(stamp, 'utf8'))) === JSON.stringify(want))
    return { work, store }
  log(`building ${records} records into ${work} (once) ...`)
  const t0 = performance.now()
  await rm(work, { recursive: true, force: true })
  await mkdir(work, { recursive: true })
  const ds = await Dataset.create('big', {
    backend: store,
    schema: {
      fields: [
        { name: 'image', family: 'binary', media: 'image' },
        { name: 'label', family: 'scalar', kind: 'categorical' },
        { name: 'split', family: 'scalar', kind: 'categorical' },
        { name: 'embedding', family: 'embedding', dim: 8 },
      ],
    },
  })
  for (let start = 0; start < records; start += 65_536) {
    const n = Math.min(65_536, records - start)
    await ds.appendMany(
      Array.from({ length: n }, (_, k) => {
        const i = start + k
        return {
          image: bigPgm(i),
          label: String(i % 10),
          split: i % 10 === 9 ? 'validation' : 'train',
          embedding: Array.from({ length: 8 }, (_, d) => Math.sin(i * (d + 1) * 0.001) + (i % 10) * 0.1),
        }
      }),
    )
  }
  const anchors: bigint[] = []
  const labels: string[] = []
  for await (const batch of ds.iterArrowBatches({ fields: ['label'], batchSize: 65_536 })) {
    const a = batch.getChild('_anchor')!
    const l = batch.getChild('label')!
    for (let i = 0; i < batch.numRows; i++) {
      anchors.push(a.get(i) as bigint)
      labels.push(String(l.get(i)))
    }
  }
  for (const [k, name] of BIG_RUNS.entries()) {
    const run = await ds.branch(name)
    await run.addScalarLayer(
      'prediction',
      'image',
      'categorical',
      anchors.map(
        (anchor, i) => [anchor, (i * 7 + k) % 20 < k + 2 ? String((i + k + 1) % 10) : labels[i]!] as const,
      ),
    )
  }
  await writeFile(stamp, JSON.stringify(want))
  return { work, store, builtSeconds: (performance.now() - t0) / 1000 }
}
