import { describe, expect, it } from 'vitest'
import { distance, type Metric, row } from './helpers/data.js'
import { estimates, fixture } from './helpers/index.js'

// The default confidence of the search's error bound (DEFAULT_EPSILON0).
const EPSILON0 = 3.5

describe.each([
  ['l2', 1, 128],
  ['l2', 4, 128],
  ['ip', 1, 200],
  ['cosine', 1, 96],
  ['cosine', 8, 96],
] as const)('estimator, %s, %i bit(s), dimension %i', (metric: Metric, bits: number, dim: number) => {
  it('is unbiased, and its error bound holds for all but 0.1% of pairs', async () => {
    const f = await fixture({ dim, n: 2000, queries: 40, metric, bits, seed: 11 })
    let pairs = 0
    let sumErr = 0
    let sumAbs = 0
    let sumErrEx = 0
    let sumAbsEx = 0
    let outside = 0
    let outsideEx = 0
    let sumBound = 0
    let sumBoundEx = 0
    for (let qi = 0; qi < 40; qi++) {
      const q = row(f.queries, dim, qi)
      estimates(f.index, q, EPSILON0, (id, est, bound, estEx, boundEx) => {
        const truth = distance(metric, q, row(f.base, dim, Number(id)))
        const tolerance = 1e-6 * (1 + Math.abs(truth)) // float32 rounding where the bound is 0 (o = c)
        pairs++
        sumErr += est - truth
        sumAbs += Math.abs(est - truth)
        sumErrEx += estEx - truth
        sumAbsEx += Math.abs(estEx - truth)
        sumBound += bound
        sumBoundEx += boundEx
        if (Math.abs(est - truth) > bound + tolerance) outside++
        if (Math.abs(estEx - truth) > boundEx + tolerance) outsideEx++
      })
    }
    expect(pairs).toBe(80_000)
    // Unbiased: the mean signed error is a small fraction of the mean absolute error
    // (for n independent errors it shrinks like 1/sqrt(n); 5% leaves room for correlation).
    expect(Math.abs(sumErr) / sumAbs).toBeLessThan(0.05)
    expect(Math.abs(sumErrEx) / sumAbsEx).toBeLessThan(0.05)
    expect(outside / pairs).toBeLessThanOrEqual(0.001)
    expect(outsideEx / pairs).toBeLessThanOrEqual(0.001)
    // The bound is not vacuous: it is within a few times the typical error.
    expect(sumBound / sumAbs).toBeLessThan(8)
    if (bits > 1) {
      // More bits, smaller errors and bounds.
      expect(sumAbsEx).toBeLessThan(sumAbs / 2)
      expect(sumBoundEx).toBeLessThan(sumBound / 2)
    }
  })
})
