import { describe, expect, it } from 'vitest'
import { createCompressor, createVectorIndex, trainSpatialIndex } from '../src/index.js'
import { smallestFirst } from '../src/index-memory.js'
import { nearestFirstOf } from '../src/nearest-first.js'
import { Prng } from '../src/prng.js'
import { bruteForce, clustered, distance, gaussian, type Metric, recall, row } from './helpers/data.js'
import { estimates, fixture } from './helpers/index.js'

function meanRecall(
  f: Awaited<ReturnType<typeof fixture>>,
  metric: Metric,
  options: { k: number; nprobe: number; rerank: boolean },
  queries = 50,
): { recall: number; reranked: number; estimated: number } {
  let total = 0
  let reranked = 0
  let estimated = 0
  for (let qi = 0; qi < queries; qi++) {
    const q = row(f.queries, f.dim, qi)
    const result = f.index.search(q, options)
    total += recall(result.ids, bruteForce(f.base, f.dim, q, options.k, metric))
    reranked += result.stats.reranked
    estimated += result.stats.estimated
  }
  return { recall: total / queries, reranked: reranked / queries, estimated: estimated / queries }
}

describe('smallestFirst (the coarse probe ranking its candidates)', () => {
  it('ranks as nearestFirstOf does: by key, then index, ties and all', () => {
    const prng = new Prng(77)
    const bestKeys = new Float64Array(64)
    const out = new Uint32Array(64)
    for (let trial = 0; trial < 300; trial++) {
      const m = 1 + prng.below(40)
      const count = 1 + prng.below(m)
      // Few distinct keys, so that ties are common; ascending indices with gaps.
      const keys = Float64Array.from({ length: m }, () => prng.below(6) - 2.5)
      const indices = new Uint32Array(m)
      for (let i = 0, at = prng.below(3); i < m; i++, at += 1 + prng.below(3)) indices[i] = at
      const want = nearestFirstOf(keys, indices, m, count)
      const got = smallestFirst(keys, indices, m, count, bestKeys, out)
      expect(Array.from(got.subarray(0, count))).toEqual(Array.from(want))
    }
  })
})

describe.each(['l2', 'ip', 'cosine'] as const)('recall@10 against brute force (%s)', (metric) => {
  it('1 bit: >= 0.99 with rerank at nprobe 8 of ~63 lists, reranking few vectors', async () => {
    const f = await fixture({ dim: 128, n: 4000, queries: 50, metric, bits: 1, seed: 21 })
    const withRerank = meanRecall(f, metric, { k: 10, nprobe: 8, rerank: true })
    expect(withRerank.recall).toBeGreaterThanOrEqual(0.99)
    // the bound gates: only a small share of the scanned vectors gets an exact distance
    expect(withRerank.reranked).toBeLessThan(withRerank.estimated / 5)
    const without = meanRecall(f, metric, { k: 10, nprobe: 8, rerank: false })
    expect(without.recall).toBeGreaterThanOrEqual(0.6)
    expect(without.reranked).toBe(0)
  })

  it('4 and 8 bits without rerank: >= 0.9 and >= 0.98', async () => {
    const f4 = await fixture({
      dim: 128,
      n: 4000,
      queries: 50,
      metric,
      bits: 4,
      seed: 22,
      keepVectors: false,
    })
    expect(meanRecall(f4, metric, { k: 10, nprobe: 8, rerank: false }).recall).toBeGreaterThanOrEqual(0.9)
    const f8 = await fixture({
      dim: 128,
      n: 4000,
      queries: 50,
      metric,
      bits: 8,
      seed: 22,
      keepVectors: false,
    })
    expect(meanRecall(f8, metric, { k: 10, nprobe: 8, rerank: false }).recall).toBeGreaterThanOrEqual(0.98)
  })

  it('scanning every list with rerank returns exactly the brute-force neighbours and distances', async () => {
    const f = await fixture({ dim: 48, n: 1500, queries: 20, metric, bits: 2, seed: 23 })
    const lists = f.index.spatialIndex.lists
    for (let qi = 0; qi < 20; qi++) {
      const q = row(f.queries, f.dim, qi)
      const result = f.index.search(q, { k: 10, nprobe: lists, rerank: true })
      const truth = bruteForce(f.base, f.dim, q, 10, metric)
      expect(recall(result.ids, truth)).toBe(1)
      result.ids.forEach((id, i) => {
        const exact = distance(metric, q, row(f.base, f.dim, Number(id)))
        expect(result.distances[i]).toBeCloseTo(exact, 3)
        if (i > 0) expect(result.distances[i]!).toBeGreaterThanOrEqual(result.distances[i - 1]!)
      })
    }
  })
})

describe('search', () => {
  it('gives the same results with WASM and TypeScript kernels', async () => {
    const a = await fixture({
      dim: 100,
      n: 1500,
      queries: 10,
      metric: 'l2',
      bits: 3,
      seed: 5,
      kernels: 'wasm',
    })
    const b = await fixture({ dim: 100, n: 1500, queries: 10, metric: 'l2', bits: 3, seed: 5, kernels: 'js' })
    expect(a.index.kernels).toBe('wasm')
    expect(b.index.kernels).toBe('js')
    for (let qi = 0; qi < 10; qi++) {
      const q = row(a.queries, 100, qi)
      for (const rerank of [false, true]) {
        const ra = a.index.search(q, { k: 10, nprobe: 5, rerank })
        const rb = b.index.search(q, { k: 10, nprobe: 5, rerank })
        expect(ra).toEqual(rb)
      }
    }
  })

  it('pads odd dimensions (1, 13, 100): recall with rerank is exact over all lists', async () => {
    for (const dim of [1, 13, 100]) {
      const f = await fixture({ dim, n: 600, queries: 10, metric: 'l2', bits: 1, seed: dim })
      expect(f.index.compressor.paddedDim).toBe(Math.max(64, Math.ceil(dim / 64) * 64))
      for (let qi = 0; qi < 10; qi++) {
        const q = row(f.queries, dim, qi)
        const result = f.index.search(q, { k: 5, nprobe: f.index.spatialIndex.lists })
        // ties are common at dim 1; compare distances rather than ids
        const truth = bruteForce(f.base, dim, q, 5, 'l2').map((i) => distance('l2', q, row(f.base, dim, i)))
        result.distances.forEach((d, i) => {
          expect(d).toBeCloseTo(truth[i]!, 4)
        })
      }
    }
  })

  it('k larger than the index returns every vector, sorted; an empty index returns nothing', async () => {
    const dim = 16
    const data = clustered({ n: 300, dim, seed: 3 })
    const spatialIndex = await trainSpatialIndex(data, { dim, metric: 'l2', lists: 10 })
    const index = createVectorIndex({ spatialIndex, compressor: createCompressor({ dim, metric: 'l2' }) })
    const q = row(data, dim, 0)
    const empty = index.search(q, { k: 5 })
    expect(empty.ids.length).toBe(0)
    expect(empty.distances.length).toBe(0)
    // fewer vectors than lists: most lists stay empty
    index.add(data.subarray(0, 7 * dim))
    expect(index.size).toBe(7)
    expect([...index.listSizes()].filter((s) => s === 0).length).toBeGreaterThan(0)
    const all = index.search(q, { k: 50, nprobe: 10 })
    expect(all.ids.length).toBe(7)
    expect([...all.ids].map(Number).sort((a, b) => a - b)).toEqual([0, 1, 2, 3, 4, 5, 6])
    for (let i = 1; i < 7; i++) expect(all.distances[i]!).toBeGreaterThanOrEqual(all.distances[i - 1]!)
    // nprobe 1 sees one list only: fewer results, never wrong ones
    const one = index.search(q, { k: 50, nprobe: 1 })
    expect(one.ids.length).toBeLessThanOrEqual(7)
    expect(one.ids[0]).toBe(0n)
  })

  it('searchMany answers each query as search does, with rows padded where fewer match', async () => {
    const dim = 20
    const data = clustered({ n: 600, dim, seed: 5 })
    const spatialIndex = await trainSpatialIndex(data, { dim, metric: 'cosine', lists: 12 })
    for (const bits of [1, 4]) {
      const compressor = createCompressor({ dim, metric: 'cosine', bits })
      const index = createVectorIndex({ spatialIndex, compressor })
      index.add(data)
      const queries = [
        row(data, dim, 3),
        row(data, dim, 400),
        Float32Array.from(row(data, dim, 9), (x) => -x),
      ]
      for (const options of [
        { k: 7, nprobe: 3 },
        { k: 5, nprobe: 12, rerank: false },
        { k: 4, filter: (id: bigint) => id % 3n === 0n },
      ]) {
        const many = index.searchMany(queries, options)
        let reranked = 0
        queries.forEach((q, i) => {
          const one = index.search(q, options)
          reranked += one.stats.reranked
          expect(many.counts[i]).toBe(one.ids.length)
          expect(many.ids.subarray(i * options.k, i * options.k + one.ids.length)).toEqual(one.ids)
          expect(many.distances.subarray(i * options.k, i * options.k + one.ids.length)).toEqual(
            one.distances,
          )
        })
        expect(many.stats.reranked).toBe(reranked)
      }
      // More queries than one block of searchMany's centroid scoring (64 rows at dim 20).
      const lots = index.searchMany(data.subarray(0, 150 * dim), { k: 5, nprobe: 3 })
      for (let i = 0; i < 150; i++) {
        const one = index.search(row(data, dim, i), { k: 5, nprobe: 3 })
        expect(lots.ids.subarray(i * 5, i * 5 + one.ids.length)).toEqual(one.ids)
        expect(lots.distances.subarray(i * 5, i * 5 + one.ids.length)).toEqual(one.distances)
      }
      // A flat matrix of queries; a filter leaving 2 vectors pads each row with +Infinity.
      const two = index.searchMany(data.subarray(0, 2 * dim), { k: 3, nprobe: 12, filter: (id) => id < 2n })
      expect([...two.counts]).toEqual([2, 2])
      expect(two.ids[0]).toBe(0n)
      expect(two.ids[3]).toBe(1n)
      expect(two.distances[2]).toBe(Number.POSITIVE_INFINITY)
      expect(() => index.searchMany([row(data, dim, 0).subarray(1)], { k: 1 })).toThrow(/dim|dimension/i)
    }
  })

  it('searchMany reads a flat matrix of queries in place without changing it, and returns 64-bit ids whole', async () => {
    // Under l2 and ip a flat Float32Array of queries is read where it lies (not copied); under
    // cosine it must still be normalised in a copy. Ids are copied as pairs of u32 words.
    const dim = 16
    const data = clustered({ n: 400, dim, seed: 9 })
    const ids = BigUint64Array.from({ length: 400 }, (_, i) => (BigInt(i) << 40n) + 0xfedc_ba98n + BigInt(i))
    for (const metric of ['l2', 'ip', 'cosine'] as const) {
      const spatialIndex = await trainSpatialIndex(data, { dim, metric, lists: 8 })
      const index = createVectorIndex({ spatialIndex, compressor: createCompressor({ dim, metric }) })
      index.add(data, { ids })
      const queries = Float32Array.from(data.subarray(0, 40 * dim), (x, j) => x * (1 + (j % 3)))
      const before = queries.slice()
      const options = { k: 6, nprobe: 3 }
      const many = index.searchMany(queries, options)
      expect(queries).toEqual(before)
      for (let i = 0; i < 40; i++) {
        const one = index.search(queries.subarray(i * dim, (i + 1) * dim), options)
        expect(many.ids.subarray(i * 6, i * 6 + one.ids.length)).toEqual(one.ids)
        expect(many.distances.subarray(i * 6, i * 6 + one.ids.length)).toEqual(one.distances)
        for (const id of one.ids) expect(ids).toContain(id)
      }
      expect(many.counts.every((c) => c === 6)).toBe(true)
    }
  })

  it('searchMany equals search where the visit order decides: a loose bound, many queries, both kernels', async () => {
    // searchMany runs FastScan list by list for a batch of queries, then each query's screen
    // and rerank in its own nearest-first order. With epsilon0 0 the bound is 0: a vector is
    // reranked only while its estimate beats the k-th exact distance found so far, so the
    // answer depends on which lists were scanned first, and any reordering would show.
    const dim = 24
    const data = clustered({ n: 1500, dim, seed: 17 })
    for (const metric of ['l2', 'cosine'] as const) {
      const spatialIndex = await trainSpatialIndex(data, { dim, metric, lists: 20 })
      for (const [bits, kernels] of [
        [1, 'wasm'],
        [1, 'js'],
        [3, 'wasm'],
      ] as const) {
        const index = createVectorIndex({
          spatialIndex,
          compressor: createCompressor({ dim, metric, bits }),
          kernels,
        })
        index.add(data)
        // 1100 queries: more than one batch (1024); each probes 5 of 20 lists, so a list is
        // scanned for many queries of a batch (in pairs, and one alone where the count is odd).
        const count = kernels === 'js' ? 120 : 1100
        const queries = new Float32Array(count * dim)
        for (let i = 0; i < count; i++) {
          const from = row(data, dim, (i * 7) % 1500)
          for (let j = 0; j < dim; j++) queries[i * dim + j] = from[j]! + Math.sin(i + j) * 0.3
        }
        for (const options of [
          { k: 10, nprobe: 5, epsilon0: 0 },
          { k: 3, nprobe: 5, epsilon0: 0.5 },
          { k: 10, nprobe: 20, epsilon0: 0, rerank: false },
        ]) {
          const many = index.searchMany(queries, options)
          let reranked = 0
          let estimated = 0
          for (let i = 0; i < count; i++) {
            const one = index.search(queries.subarray(i * dim, (i + 1) * dim), options)
            reranked += one.stats.reranked
            estimated += one.stats.estimated
            expect(many.counts[i]).toBe(one.ids.length)
            expect(many.ids.subarray(i * options.k, (i + 1) * options.k)).toEqual(one.ids)
            expect(many.distances.subarray(i * options.k, (i + 1) * options.k)).toEqual(one.distances)
          }
          expect(many.stats.reranked).toBe(reranked)
          expect(many.stats.estimated).toBe(estimated)
        }
      }
    }
  })

  it('the coarse probe picks the lists that ranking every centroid in f32 picks, even where i16 cannot tell them apart', () => {
    // Centroids at distances 5 + 0.0002 i from the query, in shuffled list order: 0.002 apart in
    // the l2 key, under what i16 rounding resolves here (a few hundredths) and far over f32's
    // error. Only the exact scores of the lists the bound leaves can order them.
    const dim = 16
    const near = 12
    const far = 12
    const lists = near + far
    const prng = new Prng(31)
    const query = Float32Array.from({ length: dim }, () => 3 * gaussian(prng))
    const radius = Array.from({ length: near }, (_, i) => 5 + 0.0002 * i)
    const shuffled = [7, 2, 11, 0, 5, 9, 3, 10, 1, 6, 8, 4]
    const centroids = new Float32Array(lists * dim)
    for (let l = 0; l < lists; l++) {
      const u = Float32Array.from({ length: dim }, () => gaussian(prng))
      const norm = Math.hypot(...u)
      const r = l < near ? radius[shuffled[l]!]! : 40 + l
      for (let j = 0; j < dim; j++) centroids[l * dim + j] = query[j]! + (r * u[j]!) / norm
    }
    const spatialIndex = {
      kind: 'ivf' as const,
      dim,
      metric: 'l2' as const,
      lists,
      centroids,
      training: { seed: 0, iterations: 0, samples: 0, maxPointsPerList: 0 },
    }
    // Three vectors next to each centroid (so in its list), ids 3 l .. 3 l + 2.
    const data = new Float32Array(lists * 3 * dim)
    for (let i = 0; i < lists * 3; i++) {
      const l = Math.floor(i / 3)
      for (let j = 0; j < dim; j++) data[i * dim + j] = centroids[l * dim + j]! + gaussian(prng) * 0.01
    }
    for (const kernels of ['wasm', 'js'] as const) {
      const index = createVectorIndex({
        spatialIndex,
        compressor: createCompressor({ dim, metric: 'l2' }),
        kernels,
      })
      index.add(data)
      for (const nprobe of [1, 3, 5, 8]) {
        // The nprobe nearest lists are those with the smallest radius; every vector of them
        // comes back (k covers them all and everything is reranked).
        const want = shuffled
          .map((rank, l) => ({ rank, l }))
          .filter(({ rank }) => rank < nprobe)
          .flatMap(({ l }) => [3 * l, 3 * l + 1, 3 * l + 2])
          .sort((a, b) => a - b)
        const options = { k: 3 * nprobe, nprobe, rerank: true }
        const got = index.search(query, options)
        expect([...got.ids].map(Number).sort((a, b) => a - b)).toEqual(want)
        expect(got.stats.lists).toBe(nprobe)
        const many = index.searchMany([query, query], options)
        expect(many.ids.subarray(0, options.k)).toEqual(got.ids)
        expect(many.ids.subarray(options.k)).toEqual(got.ids)
      }
    }
  })

  it('a searchMany stopped by a throwing filter leaves no trace in vectors added later', async () => {
    // searchMany's batch works on the heap past the index's regions, where later lists go.
    const dim = 24
    const data = clustered({ n: 1200, dim, seed: 23 })
    const spatialIndex = await trainSpatialIndex(data, { dim, metric: 'l2', lists: 16 })
    const compressor = createCompressor({ dim, metric: 'l2' })
    const clean = createVectorIndex({ spatialIndex, compressor })
    const used = createVectorIndex({ spatialIndex, compressor })
    for (const index of [clean, used]) index.add(data.subarray(0, 300 * dim))
    let calls = 0
    const filter = () => {
      if (++calls > 50) throw new Error('stop')
      return true
    }
    expect(() => used.searchMany(data.subarray(300 * dim), { k: 5, nprobe: 4, filter })).toThrow('stop')
    for (const index of [clean, used]) index.add(data.subarray(300 * dim))
    for (let i = 0; i < 1200; i += 37) {
      const q = row(data, dim, i)
      // Without rerank the distances are the codes' estimates: any stray bit shows.
      const want = clean.search(q, { k: 5, nprobe: 4, rerank: false })
      const got = used.search(q, { k: 5, nprobe: 4, rerank: false })
      expect(got.ids).toEqual(want.ids)
      expect(got.distances).toEqual(want.distances)
    }
  })

  it('vectors added after training go to the nearest existing centroid and are found', async () => {
    const dim = 32
    const data = clustered({ n: 2000, dim, seed: 8 })
    const spatialIndex = await trainSpatialIndex(data.subarray(0, 500 * dim), { dim, metric: 'l2' })
    const index = createVectorIndex({ spatialIndex, compressor: createCompressor({ dim, metric: 'l2' }) })
    index.add(data.subarray(0, 1000 * dim))
    index.add(data.subarray(1000 * dim)) // a second batch, against the same centroids
    expect(index.size).toBe(2000)
    for (const i of [0, 999, 1000, 1999]) {
      const result = index.search(row(data, dim, i), { k: 1, nprobe: 1 })
      expect(result.ids[0]).toBe(BigInt(i))
      expect(result.distances[0]).toBeCloseTo(0, 4)
    }
  })

  it('honours ids and filters', async () => {
    const dim = 24
    const data = clustered({ n: 400, dim, seed: 4 })
    const spatialIndex = await trainSpatialIndex(data, { dim, metric: 'cosine' })
    const index = createVectorIndex({ spatialIndex, compressor: createCompressor({ dim, metric: 'cosine' }) })
    const ids = Array.from({ length: 400 }, (_, i) => 10n ** 15n + BigInt(i) * 2n)
    index.add(data, { ids })
    const q = row(data, dim, 17)
    const plain = index.search(q, { k: 10, nprobe: spatialIndex.lists })
    expect(plain.ids[0]).toBe(ids[17])
    const seen: bigint[] = []
    const odd = index.search(q, {
      k: 10,
      nprobe: spatialIndex.lists,
      filter: (id) => {
        seen.push(id)
        return ((id - 10n ** 15n) / 2n) % 2n === 1n
      },
    })
    expect(odd.ids.length).toBe(10)
    for (const id of odd.ids) expect(((id - 10n ** 15n) / 2n) % 2n).toBe(1n)
    // the filter is consulted for candidates only, not for every vector
    expect(seen.length).toBeLessThan(400)
    const truth = bruteForce(data, dim, q, 400, 'cosine')
      .filter((i) => i % 2 === 1)
      .slice(0, 10)
    expect(recall(odd.ids.map((id) => (id - 10n ** 15n) / 2n) as unknown as BigUint64Array, truth)).toBe(1)
  })

  it('lists longer than one FastScan chunk (2048 vectors): every vector estimated once, exact with rerank, same in both kernels', async () => {
    const dim = 40
    const n = 5000
    const data = clustered({ n: n + 5, dim, seed: 31 })
    const base = data.subarray(0, n * dim)
    const spatialIndex = await trainSpatialIndex(base, { dim, metric: 'l2', lists: 2 })
    const compressor = createCompressor({ dim, metric: 'l2' })
    const wasm = createVectorIndex({ spatialIndex, compressor, kernels: 'wasm' })
    const js = createVectorIndex({ spatialIndex, compressor, kernels: 'js' })
    wasm.add(base)
    js.add(base)
    expect(Math.max(...wasm.listSizes())).toBeGreaterThan(2048)
    const seen = new Uint8Array(n)
    estimates(wasm, row(data, dim, n), 3.5, (id) => {
      seen[Number(id)]!++
    })
    expect(seen.every((times) => times === 1)).toBe(true)
    for (let qi = n; qi < n + 5; qi++) {
      const q = row(data, dim, qi)
      const exact = wasm.search(q, { k: 10, nprobe: 2, rerank: true })
      expect(exact.stats.estimated).toBe(n)
      const truth = bruteForce(base, dim, q, 10, 'l2')
      exact.distances.forEach((d, i) => {
        expect(d).toBeCloseTo(distance('l2', q, row(base, dim, truth[i]!)), 2)
      })
      for (const rerank of [true, false]) {
        expect(js.search(q, { k: 10, nprobe: 2, rerank })).toEqual(
          wasm.search(q, { k: 10, nprobe: 2, rerank }),
        )
      }
    }
  })

  it('keeps duplicates and vectors equal to a centroid', async () => {
    const dim = 8
    const one = Float32Array.from({ length: dim }, (_, j) => j)
    const data = new Float32Array(50 * dim)
    for (let i = 0; i < 50; i++) data.set(one, i * dim)
    const spatialIndex = await trainSpatialIndex(data, { dim, metric: 'l2', lists: 4 })
    const index = createVectorIndex({
      spatialIndex,
      compressor: createCompressor({ dim, metric: 'l2', bits: 3 }),
    })
    index.add(data)
    const result = index.search(one, { k: 50, nprobe: 4, rerank: false })
    expect(result.ids.length).toBe(50)
    for (const d of result.distances) expect(d).toBeCloseTo(0, 5)
  })
})

describe('storage', () => {
  it('growing lists in many small batches (regions moved and compacted) changes no result', async () => {
    const dim = 256
    const data = clustered({ n: 6000, dim, seed: 12 })
    const spatialIndex = await trainSpatialIndex(data.subarray(0, 2000 * dim), {
      dim,
      metric: 'l2',
      lists: 20,
    })
    const compressor = createCompressor({ dim, metric: 'l2', bits: 2 })
    const once = createVectorIndex({ spatialIndex, compressor })
    once.add(data)
    const drip = createVectorIndex({ spatialIndex, compressor, kernels: 'js' })
    for (let i = 0; i < 6000; i += 37) drip.add(data.subarray(i * dim, Math.min(6000, i + 37) * dim))
    expect(drip.size).toBe(6000)
    expect(drip.listSizes()).toEqual(once.listSizes())
    for (const qi of [0, 1234, 5999]) {
      for (const rerank of [true, false]) {
        const a = once.search(row(data, dim, qi), { k: 20, nprobe: 6, rerank })
        const b = drip.search(row(data, dim, qi), { k: 20, nprobe: 6, rerank })
        expect(b).toEqual(a)
      }
    }
  })
})
