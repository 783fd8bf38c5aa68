/**
 * Vector search: recall@10 and queries per second of IVF + RaBitQ (1 bit with rerank, 4 bits
 * without) at several nprobe, WASM against TypeScript kernels, next to an exact float32 scan of
 * the same vectors (the raw baseline) in the same run. `--quick` runs a small synthetic set and
 * only prints; the peer comparison (FAISS, hnswlib, usearch, LanceDB) is a later benchmark.
 */
import {
  createCompressor,
  createVectorIndex,
  type KernelKind,
  type Metric,
  trainSpatialIndex,
} from '../packages/vector/src/index.js'
import { Prng } from '../packages/vector/src/prng.js'
import { describeMachine, machineInfo, markdownTable, median, writeResults } from './_harness.js'

const quick = process.argv.includes('--quick')
const N = quick ? 5_000 : 50_000
const QUERIES = quick ? 50 : 500
const DIM = quick ? 128 : 384
const METRIC: Metric = 'cosine'
const K = 10
const PASSES = quick ? 1 : 3

/** An embedding-like stand-in (synthetic, labelled so): normalised anisotropic Gaussian mixture. */
function syntheticEmbeddings(n: number, dim: number, seed: number): Float32Array {
  const prng = new Prng(seed)
  const gauss = () => Math.sqrt(-2 * Math.log(1 - prng.next())) * Math.cos(2 * Math.PI * prng.next())
  const clusters = 64
  const centres = Float64Array.from({ length: clusters * dim }, (_, i) => gauss() * ((i % dim) + 1) ** -0.5)
  const out = new Float32Array(n * dim)
  for (let i = 0; i < n; i++) {
    const c = prng.below(clusters)
    for (let j = 0; j < dim; j++) out[i * dim + j] = centres[c * dim + j]! + 0.6 * gauss() * (j + 1) ** -0.5
  }
  return out
}

function normalise(data: Float32Array, dim: number): void {
  for (let i = 0; i < data.length / dim; i++) {
    let n = 0
    for (let j = 0; j < dim; j++) n += data[i * dim + j]! ** 2
    n = Math.sqrt(n)
    for (let j = 0; j < dim; j++) data[i * dim + j] = data[i * dim + j]! / n
  }
}

/** The raw baseline: an exact scan (cosine on unit vectors = largest dot), top-k by insertion. */
function exactTopK(base: Float32Array, query: Float32Array, k: number): number[] {
  const best: { id: number; d: number }[] = []
  const n = base.length / DIM
  for (let i = 0; i < n; i++) {
    let dot = 0
    for (let j = 0; j < DIM; j++) dot += base[i * DIM + j]! * query[j]!
    const d = 1 - dot
    if (best.length < k || d < best[best.length - 1]!.d) {
      best.push({ id: i, d })
      best.sort((a, b) => a.d - b.d)
      if (best.length > k) best.pop()
    }
  }
  return best.map((b) => b.id)
}

const machine = machineInfo(new Date())
const all = syntheticEmbeddings(N + QUERIES, DIM, 1)
normalise(all, DIM)
const base = all.subarray(0, N * DIM)
const queries = Array.from({ length: QUERIES }, (_, i) => all.subarray((N + i) * DIM, (N + i + 1) * DIM))

const exactTimes: number[] = []
let truth: number[][] = []
for (let pass = 0; pass < PASSES; pass++) {
  const start = performance.now()
  truth = queries.map((q) => exactTopK(base, q, K))
  exactTimes.push((performance.now() - start) / 1000)
}
const exactQps = QUERIES / median(exactTimes)

const trainStart = performance.now()
const spatialIndex = await trainSpatialIndex(base, { dim: DIM, metric: METRIC })
const trainSeconds = (performance.now() - trainStart) / 1000

interface Row {
  kernels: KernelKind
  bits: number
  rerank: boolean
  nprobe: number
  recall: number
  qps: number
  reranked: number
  estimated: number
}
const rows: Row[] = []
for (const kernels of ['wasm', 'js'] as const) {
  for (const [bits, rerank] of [
    [1, true],
    [4, false],
  ] as const) {
    const index = createVectorIndex({
      spatialIndex,
      compressor: createCompressor({ dim: DIM, metric: METRIC, bits }),
      keepVectors: rerank,
      kernels,
    })
    index.add(base)
    for (const nprobe of [4, 8, 16, 32].filter((p) => p <= spatialIndex.lists)) {
      const times: number[] = []
      let recall = 0
      let reranked = 0
      let estimated = 0
      for (let pass = 0; pass <= PASSES; pass++) {
        // pass 0 warms the JIT and is not timed
        const start = performance.now()
        let hits = 0
        reranked = 0
        estimated = 0
        for (let qi = 0; qi < QUERIES; qi++) {
          const result = index.search(queries[qi]!, { k: K, nprobe, rerank })
          const want = new Set(truth[qi])
          for (const id of result.ids) if (want.has(Number(id))) hits++
          reranked += result.stats.reranked
          estimated += result.stats.estimated
        }
        if (pass > 0) times.push((performance.now() - start) / 1000)
        recall = hits / (QUERIES * K)
      }
      rows.push({
        kernels,
        bits,
        rerank,
        nprobe,
        recall,
        qps: QUERIES / median(times),
        reranked: reranked / QUERIES,
        estimated: estimated / QUERIES,
      })
    }
  }
}

const table = markdownTable(
  ['kernels', 'bits', 'rerank', 'nprobe', 'recall@10', 'QPS', 'x exact scan', 'estimated/q', 'exact/q'],
  rows.map((r) => [
    r.kernels,
    String(r.bits),
    r.rerank ? 'yes' : 'no',
    String(r.nprobe),
    r.recall.toFixed(3),
    r.qps.toFixed(0),
    (r.qps / exactQps).toFixed(1),
    r.estimated.toFixed(0),
    r.reranked.toFixed(1),
  ]),
)
const section = `## vector

${describeMachine(machine)}. Synthetic embedding-like data (normalised Gaussian mixture, labelled
synthetic), ${N} vectors of ${DIM} dimensions, ${QUERIES} queries, cosine, k = ${K}, one query per call,
one thread; ${spatialIndex.lists} lists trained in ${trainSeconds.toFixed(1)} s. Baseline: an exact
float32 scan in TypeScript, ${exactQps.toFixed(0)} QPS in the same run.

${table}
`
console.log(section)
if (!quick) {
  const written = await writeResults(
    'vector',
    new Date(machine.date),
    { machine, n: N, dim: DIM, queries: QUERIES, lists: spatialIndex.lists, trainSeconds, exactQps, rows },
    section,
  )
  console.log(`wrote ${written.json}`)
}
