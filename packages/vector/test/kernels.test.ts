import { describe, expect, it } from 'vitest'
import { createKernels, type Kernels, wasmAvailable } from '../src/kernels/kernels.js'
import { Prng } from '../src/prng.js'
import { Rotation, rotationSigns } from '../src/rotation.js'
import { gaussian } from './helpers/data.js'

const wasm = (): Kernels => createKernels('wasm')
const js = (): Kernels => createKernels('js')

/** Fill the same bytes into both heaps. */
function both(bytes: Uint8Array): [Kernels, Kernels] {
  const a = wasm()
  const b = js()
  for (const k of [a, b]) {
    k.reserve(bytes.length)
    k.u8().set(bytes)
  }
  return [a, b]
}

function randomBytes(n: number, seed: number): Uint8Array {
  const prng = new Prng(seed)
  return Uint8Array.from({ length: n }, () => prng.nextUint32() & 0xff)
}

describe('kernels', () => {
  it('runs WebAssembly SIMD here (so the comparisons below compare two implementations)', () => {
    expect(wasmAvailable()).toBe(true)
    expect(wasm().kind).toBe('wasm')
    expect(js().kind).toBe('js')
    expect(createKernels('auto').kind).toBe('wasm')
  })

  it('fastscan: identical u32 sums in TypeScript and WASM, equal to the plain definition', () => {
    // 1088 groups crosses the 1024-group flush of the u16 lanes; LUT entries up to 60.
    for (const [groups, nblocks] of [
      [16, 1],
      [32, 3],
      [196, 5],
      [1088, 2],
    ] as const) {
      const codesBytes = nblocks * groups * 16
      const prng = new Prng(groups)
      const lut = Uint8Array.from({ length: groups * 16 }, () => prng.below(61))
      const heap = new Uint8Array(codesBytes + lut.length + nblocks * 128)
      heap.set(randomBytes(codesBytes, groups + 1))
      heap.set(lut, codesBytes)
      const [a, b] = both(heap)
      const out = codesBytes + lut.length
      a.fastscan(0, nblocks, codesBytes, groups, out)
      b.fastscan(0, nblocks, codesBytes, groups, out)
      const sa = a.u32().slice(out / 4, out / 4 + nblocks * 32)
      const sb = b.u32().slice(out / 4, out / 4 + nblocks * 32)
      expect(Array.from(sa)).toEqual(Array.from(sb))
      // definition: code v of block k takes nibble (v < 16 ? low : high) of byte g*16 + v % 16
      for (let blk = 0; blk < nblocks; blk++) {
        for (const v of [0, 7, 15, 16, 31]) {
          let want = 0
          for (let g = 0; g < groups; g++) {
            const byte = heap[blk * groups * 16 + g * 16 + (v & 15)]!
            want += lut[g * 16 + (v < 16 ? byte & 15 : byte >> 4)]!
          }
          expect(sa[blk * 32 + v]).toBe(want)
        }
      }
    }
  })

  it("fastscan2: two tables at once give each table's fastscan sums, in TypeScript and WASM", () => {
    for (const [groups, nblocks] of [
      [16, 1],
      [196, 5],
      [1088, 2],
    ] as const) {
      const codesBytes = nblocks * groups * 16
      const prng = new Prng(groups + 7)
      const luts = Uint8Array.from({ length: 2 * groups * 16 }, () => prng.below(61))
      const heap = new Uint8Array(codesBytes + luts.length + 3 * nblocks * 128)
      heap.set(randomBytes(codesBytes, groups + 3))
      heap.set(luts, codesBytes)
      // Stale bytes where the sums go: the kernel must clear its output first.
      heap.fill(0xa5, codesBytes + luts.length)
      const lut = codesBytes
      const lut2 = codesBytes + groups * 16
      const out = codesBytes + luts.length
      const out2 = out + nblocks * 128
      const single = out2 + nblocks * 128
      for (const k of both(heap)) {
        k.fastscan2(0, nblocks, lut, lut2, groups, out, out2)
        const u32 = k.u32()
        k.fastscan(0, nblocks, lut, groups, single)
        expect(Array.from(u32.slice(out / 4, out / 4 + nblocks * 32))).toEqual(
          Array.from(u32.slice(single / 4, single / 4 + nblocks * 32)),
        )
        k.fastscan(0, nblocks, lut2, groups, single)
        expect(Array.from(u32.slice(out2 / 4, out2 / 4 + nblocks * 32))).toEqual(
          Array.from(u32.slice(single / 4, single / 4 + nblocks * 32)),
        )
      }
    }
  })

  it('quant16 and dots16: the same i16 rounding (ties to even) and exact integer dot products in TypeScript and WASM', () => {
    for (const [n, rows, seed] of [
      [8, 5, 1],
      [784, 9, 2],
      [384, 4, 3],
    ] as const) {
      const prng = new Prng(seed)
      // x: halves that round to even once scaled (qmax / max|x| = 2 below), and random values.
      const x = Float32Array.from({ length: n }, (_, j) =>
        j < 4 ? [0.25, 0.75, -1.25, 4][j]! : gaussian(prng),
      )
      x[5] = 4 // max |x|
      const qmax = n === 8 ? 8 : 1000
      const rowsI16 = Int16Array.from({ length: rows * n }, () => prng.below(2 * qmax + 1) - qmax)
      // layout: x (f32), its i16, rows (i16), out (f64), stats
      const xOff = 0
      const qOff = n * 4
      const rowsOff = qOff + n * 2
      const outOff = rowsOff + rows * n * 2
      const statsOff = outOff + rows * 8
      const heap = new Uint8Array(statsOff + 16)
      heap.set(new Uint8Array(x.buffer), xOff)
      heap.set(new Uint8Array(rowsI16.buffer), rowsOff)
      const [a, b] = both(heap)
      const results = [a, b].map((k) => {
        k.quant16(xOff, n, qmax, qOff, statsOff)
        k.dots16(qOff, rowsOff, rows, n, outOff)
        const buffer = k.u8().buffer
        return {
          q: Array.from(new Int16Array(buffer, qOff, n)),
          out: Array.from(new Float64Array(buffer, outOff, rows)),
          stats: Array.from(new Float32Array(buffer, statsOff, 2)),
        }
      })
      expect(results[0]).toEqual(results[1])
      const { q, out, stats } = results[0]!
      expect(stats[0]).toBe(4)
      expect(stats[1]).toBe(Math.fround(qmax / 4))
      if (n === 8) expect(q.slice(0, 4)).toEqual([0, 2, -2, 8]) // 0.5, 1.5, -2.5 to even
      for (let r = 0; r < rows; r++) {
        let want = 0
        for (let j = 0; j < n; j++) want += q[j]! * rowsI16[r * n + j]!
        expect(out[r]).toBe(want)
      }
    }
  })

  it("dots16x2: two rows' exact i16 dot products at once, each equal to dots16's, in TypeScript and WASM", () => {
    for (const [n, rows, seed] of [
      [8, 1, 1],
      [16, 4, 2],
      [784, 11, 3],
      [384, 0, 4],
    ] as const) {
      const prng = new Prng(seed)
      const qmax = 1000
      const draw = (count: number) =>
        Int16Array.from({ length: count }, () => prng.below(2 * qmax + 1) - qmax)
      const x = draw(n)
      const x2 = draw(n)
      const table = draw(rows * n)
      const xOff = 0
      const x2Off = n * 2
      const rowsOff = 2 * n * 2
      const outOff = rowsOff + Math.ceil((rows * n * 2) / 16) * 16
      const out2Off = outOff + rows * 8 + 8
      const heap = new Uint8Array(out2Off + rows * 8 + 8)
      heap.set(new Uint8Array(x.buffer), xOff)
      heap.set(new Uint8Array(x2.buffer), x2Off)
      heap.set(new Uint8Array(table.buffer), rowsOff)
      const [a, b] = both(heap)
      for (const k of [a, b]) {
        k.f64().fill(-1, outOff / 8, out2Off / 8 + rows + 1)
        k.dots16x2(xOff, x2Off, rowsOff, rows, n, outOff, out2Off)
        const got = Array.from(k.f64().subarray(outOff / 8, outOff / 8 + rows + 1))
        const got2 = Array.from(k.f64().subarray(out2Off / 8, out2Off / 8 + rows + 1))
        k.dots16(xOff, rowsOff, rows, n, outOff)
        k.dots16(x2Off, rowsOff, rows, n, out2Off)
        expect(got).toEqual(Array.from(k.f64().subarray(outOff / 8, outOff / 8 + rows + 1)))
        expect(got2).toEqual(Array.from(k.f64().subarray(out2Off / 8, out2Off / 8 + rows + 1)))
        // nothing written past the rows
        expect(got[rows]).toBe(-1)
        expect(got2[rows]).toBe(-1)
        for (let r = 0; r < rows; r++) {
          let want = 0
          let want2 = 0
          for (let j = 0; j < n; j++) {
            want += x[j]! * table[r * n + j]!
            want2 += x2[j]! * table[r * n + j]!
          }
          expect([got[r], got2[r]]).toEqual([want, want2])
        }
      }
    }
  })

  it('lut4: identical tables and statistics in TypeScript and WASM, equal to the plain definition', () => {
    for (const [dim, seed, spread] of [
      [64, 1, 1],
      [384, 2, 0.001],
      [832, 3, 1000],
      [128, 4, 0], // q' constant: delta = 0, an all-zero table
    ] as const) {
      const prng = new Prng(seed)
      const rq = Float32Array.from({ length: dim }, () => gaussian(prng) * spread + 0.5)
      const rc = Float32Array.from({ length: dim }, () => (spread === 0 ? -0.25 : gaussian(prng) * spread))
      const dither = Float64Array.from({ length: dim }, () => prng.next())
      // layout: rq, rc (f32), dither, qp (f64), lut, stats
      const rqOff = 0
      const rcOff = dim * 4
      const ditherOff = dim * 8
      const qpOff = dim * 16
      const lutOff = dim * 24
      const statsOff = lutOff + dim * 4
      const heap = new Uint8Array(statsOff + 32)
      heap.set(new Uint8Array(rq.buffer), rqOff)
      heap.set(new Uint8Array(rc.buffer), rcOff)
      heap.set(new Uint8Array(dither.buffer), ditherOff)
      const [a, b] = both(heap)
      a.lut4(rqOff, rcOff, dim, ditherOff, qpOff, lutOff, statsOff)
      b.lut4(rqOff, rcOff, dim, ditherOff, qpOff, lutOff, statsOff)
      expect(
        Buffer.from(a.u8().subarray(0, heap.length)).equals(Buffer.from(b.u8().subarray(0, heap.length))),
      ).toBe(true)
      // definition
      const qp = Array.from(rq, (x, j) => x - rc[j]!)
      const lo = Math.min(...qp)
      const delta = (Math.max(...qp) - lo) / 15
      const x = qp.map((v, j) =>
        delta > 0 ? Math.min(15, Math.floor((v - lo) * (1 / delta) + dither[j]!)) : 0,
      )
      const stats = a.f64().subarray(statsOff / 8, statsOff / 8 + 4)
      const norm2 = qp.reduce((s, v) => s + v * v, 0)
      expect(Math.abs(stats[0]! - norm2)).toBeLessThanOrEqual(1e-12 * norm2)
      expect(stats[1]).toBe(lo)
      expect(stats[2]).toBe(delta)
      expect(stats[3]).toBe(x.reduce((s, v) => s + v, 0))
      expect(Array.from(a.f64().subarray(qpOff / 8, qpOff / 8 + dim))).toEqual(qp)
      const lut = a.u8().subarray(lutOff, lutOff + dim * 4)
      for (let g = 0; g < dim / 4; g++) {
        for (let n = 0; n < 16; n++) {
          let want = 0
          for (let t = 0; t < 4; t++) if ((n >> t) & 1) want += x[g * 4 + t]!
          expect(lut[g * 16 + n]).toBe(want)
        }
      }
      if (spread !== 0) expect(x.some((v) => v === 15) && x.some((v) => v === 0)).toBe(true)
    }
  })

  it('planes8: identical bit planes in TypeScript and WASM, equal to the plain definition', () => {
    for (const [dim, seed, spread] of [
      [64, 1, 1],
      [832, 2, 100],
      [128, 3, 0], // hi = lo: every x is 0
    ] as const) {
      const prng = new Prng(seed)
      const qp = Float64Array.from({ length: dim }, () => gaussian(prng) * spread)
      const dither = Float64Array.from({ length: dim }, () => prng.next())
      const stride = Math.ceil(dim / 128) * 16
      const qpOff = 0
      const ditherOff = dim * 8
      const statsOff = dim * 16
      const planesOff = statsOff + 64
      const heap = new Uint8Array(planesOff + 8 * stride)
      heap.set(new Uint8Array(qp.buffer), qpOff)
      heap.set(new Uint8Array(dither.buffer), ditherOff)
      const lo = Math.min(...qp)
      const hi = Math.max(...qp)
      new Float64Array(heap.buffer, statsOff, 8).set([0, lo, 0, 0, hi])
      heap.fill(0xff, planesOff, planesOff + 8 * stride) // stale planes from an earlier list
      const [a, b] = both(heap)
      a.planes8(qpOff, dim, ditherOff, planesOff, stride, statsOff)
      b.planes8(qpOff, dim, ditherOff, planesOff, stride, statsOff)
      expect(
        Buffer.from(a.u8().subarray(0, heap.length)).equals(Buffer.from(b.u8().subarray(0, heap.length))),
      ).toBe(true)
      const delta = (hi - lo) / 255
      const x = Array.from(qp, (v, j) =>
        delta > 0 ? Math.min(255, Math.floor((v - lo) * (1 / delta) + dither[j]!)) : 0,
      )
      const stats = a.f64().subarray(statsOff / 8, statsOff / 8 + 8)
      expect(stats[5]).toBe(delta)
      expect(stats[6]).toBe(x.reduce((s, v) => s + v, 0))
      const u8 = a.u8()
      for (let j = 0; j < dim; j++) {
        for (let p = 0; p < 8; p++) {
          expect((u8[planesOff + p * stride + (j >> 3)]! >> (j & 7)) & 1).toBe((x[j]! >> p) & 1)
        }
      }
      if (spread > 0) expect(x.includes(255) && x.includes(0)).toBe(true)
    }
  })

  it('screen: identical candidates, estimates and bounds in TypeScript and WASM, equal to the definition', () => {
    for (const [count, seed] of [
      [1, 1],
      [31, 2],
      [32, 3],
      [77, 4],
      [2048, 5],
    ] as const) {
      const prng = new Prng(seed)
      const blocks = Math.ceil(count / 32)
      const sumsOff = 0
      const factorsOff = blocks * 128
      const paramsOff = factorsOff + blocks * 512
      const idxOff = paramsOff + 64
      // f64 slots must be 8-byte aligned (the index keeps every slot at a multiple of 16)
      const estOff = idxOff + Math.ceil(count / 4) * 16
      const boundOff = estOff + count * 8
      const heap = new Uint8Array(boundOff + count * 8 + 16)
      const sums = new Uint32Array(heap.buffer, sumsOff, blocks * 32)
      const factors = new Float32Array(heap.buffer, factorsOff, blocks * 128)
      for (let v = 0; v < blocks * 32; v++) {
        // the padding past `count` holds values that must not come out
        sums[v] = v < count ? prng.below(5000) : 0
        const at = (v >>> 5) * 128 + (v & 31)
        factors[at] = v < count ? gaussian(prng) : -1e9
        factors[at + 32] = v < count ? -Math.abs(gaussian(prng)) * 0.01 : 0
        factors[at + 64] = v < count ? Math.abs(gaussian(prng)) * 0.1 : 0
        factors[at + 96] = v < count ? prng.below(385) : 0
      }
      const params = [0.01, 0.002, -1.5, 0.7, 2.5, 0.0004]
      for (const threshold of [Number.POSITIVE_INFINITY, 0.5, Number.NEGATIVE_INFINITY]) {
        new Float64Array(heap.buffer, paramsOff, 7).set([...params, threshold])
        const [a, b] = both(heap)
        const na = a.screen(sumsOff, factorsOff, count, paramsOff, idxOff, estOff, boundOff)
        const nb = b.screen(sumsOff, factorsOff, count, paramsOff, idxOff, estOff, boundOff)
        expect(na).toBe(nb)
        expect(
          Buffer.from(a.u8().subarray(0, heap.length)).equals(Buffer.from(b.u8().subarray(0, heap.length))),
        ).toBe(true)
        const [pa, pb, pc, offset, pe, pf] = params as [number, number, number, number, number, number]
        const want: number[] = []
        for (let v = 0; v < count; v++) {
          const at = (v >>> 5) * 128 + (v & 31)
          const scale = factors[at + 32]!
          const err = factors[at + 64]!
          const est = factors[at]! + offset + scale * (pa * factors[at + 96]! + pb * sums[v]! + pc)
          const bound = Math.sqrt(err * err * pe + scale * scale * pf)
          if (est - bound < threshold) want.push(v)
          if (want.at(-1) === v && want.length <= na) {
            expect(a.f64()[estOff / 8 + want.length - 1]).toBeCloseTo(est, 12)
            expect(a.f64()[boundOff / 8 + want.length - 1]).toBeCloseTo(bound, 12)
          }
        }
        expect(Array.from(a.u32().subarray(idxOff / 4, idxOff / 4 + na))).toEqual(want)
        if (threshold === Number.POSITIVE_INFINITY) expect(na).toBe(count)
        if (threshold === Number.NEGATIVE_INFINITY) expect(na).toBe(0)
        if (threshold === 0.5) expect(na > 0 && na < count).toBe(count > 1)
      }
    }
  })

  it('elkan: the same candidates in TypeScript and WASM, in list order, equal to the definition', () => {
    for (const [lists, seed] of [
      [1, 1],
      [2, 2],
      [7, 3],
      [141, 4],
      [245, 5],
    ] as const) {
      const prng = new Prng(seed)
      // lower (f32, padded by one), drift (f64, padded by one), gaps (f32, padded by one), out
      const lowerOff = 8
      const driftOff = lowerOff + Math.ceil((lists + 1) / 2) * 8
      const gapsOff = driftOff + (lists + 1) * 8
      const outOff = gapsOff + Math.ceil((lists + 1) / 2) * 8
      const heap = new Uint8Array(outOff + (lists + 2) * 4)
      const lower = new Float32Array(heap.buffer, lowerOff, lists + 1)
      const drift = new Float64Array(heap.buffer, driftOff, lists + 1)
      const gaps = new Float32Array(heap.buffer, gapsOff, lists + 1)
      for (let l = 0; l < lists; l++) {
        drift[l] = l % 5 === 0 ? 0.25 : Math.abs(gaussian(prng)) * 0.1
        // every fifth list sits exactly on the bound at u = 0.5 (0.5 + 0.25 = 0.75: not passed)
        lower[l] = l % 5 === 0 ? 0.75 : Math.abs(gaussian(prng))
        gaps[l] = l % 7 === 3 ? 0.5 : Math.abs(gaussian(prng)) * 0.5
      }
      // the padding passes every test: it must not come out
      lower[lists] = -1
      gaps[lists] = -1
      for (const u of [0, 0.5, 0.9, Number.POSITIVE_INFINITY]) {
        for (const skip of [lists, 0, lists - 1]) {
          const [a, b] = both(heap)
          const na = a.elkan(lowerOff, driftOff, gapsOff, lists, u, skip, outOff)
          const nb = b.elkan(lowerOff, driftOff, gapsOff, lists, u, skip, outOff)
          const want: number[] = []
          for (let l = 0; l < lists; l++)
            if (u > gaps[l]! && u + drift[l]! > lower[l]! && l !== skip) want.push(l)
          expect(na).toBe(want.length)
          expect(nb).toBe(want.length)
          expect(Array.from(a.u32().subarray(outOff / 4, outOff / 4 + na))).toEqual(want)
          expect(Array.from(b.u32().subarray(outOff / 4, outOff / 4 + nb))).toEqual(want)
          if (u === Number.POSITIVE_INFINITY) expect(na).toBe(skip < lists ? lists - 1 : lists)
        }
      }
    }
  })

  it('exdot: identical integers in TypeScript and WASM, equal to sum(u_i * q_i)', () => {
    for (const [planes, pairs] of [
      [1, 1],
      [2, 1],
      [4, 3],
      [8, 7],
      [8, 128],
    ] as const) {
      const stride = pairs * 16
      const prng = new Prng(planes * 100 + pairs)
      const dims = pairs * 128
      const u = Uint16Array.from({ length: dims }, () => prng.below(1 << planes))
      const q = Uint8Array.from({ length: dims }, () => prng.below(256))
      if (pairs === 128) {
        u.fill((1 << planes) - 1) // the largest sum this layout allows at this size
        q.fill(255)
      }
      const heap = new Uint8Array((planes + 8) * stride)
      for (let i = 0; i < dims; i++) {
        for (let p = 0; p < planes; p++) if ((u[i]! >> p) & 1) heap[p * stride + (i >> 3)]! |= 1 << (i & 7)
        for (let p = 0; p < 8; p++)
          if ((q[i]! >> p) & 1) heap[(planes + p) * stride + (i >> 3)]! |= 1 << (i & 7)
      }
      const [a, b] = both(heap)
      let want = 0
      for (let i = 0; i < dims; i++) want += u[i]! * q[i]!
      expect(a.exdot(0, planes, pairs, planes * stride)).toBe(want)
      expect(b.exdot(0, planes, pairs, planes * stride)).toBe(want)
    }
  })

  it('float kernels (fwht, mul, scale, kac, dot, l2sq, dots) agree bit for bit', () => {
    const prng = new Prng(9)
    const n = 256
    const floats = Float32Array.from({ length: 4 * n }, () => gaussian(prng) * 10)
    floats.subarray(n, 2 * n).forEach((_, i, arr) => {
      arr[i] = prng.next() < 0.5 ? -1 : 1
    })
    const bytes = new Uint8Array(floats.buffer)
    const [a, b] = both(bytes)
    for (const k of [a, b]) {
      k.fwht(0, n)
      k.mul(0, n * 4, n)
      k.scale(0, n, 1 / Math.sqrt(n))
      k.kac(0, n / 2)
      k.fwht(2 * n * 4, 64)
      const f = k.f32()
      f[3 * n] = k.dot(0, 2 * n * 4, 100)
      f[3 * n + 1] = k.l2sq(0, 2 * n * 4, 128)
      k.dots(0, 4, 10, 16, (3 * n + 4) * 4)
    }
    // distances (and dots, four rows at a time) give dot and l2sq of each row, bit for bit
    const rows = [0, 64, 1024, 48, 512, 16, 160] // byte offsets of 7 rows (a quad and 3 more)
    for (const k of [a, b]) {
      const base = 4 * n * 4
      k.reserve(base + 4096)
      k.u32().set(rows, base / 4)
      for (const l2 of [0, 1]) {
        for (const count of [7, 4, 1]) {
          k.distances(2 * n * 4, base, count, 52, l2, base + 64)
          for (let r = 0; r < count; r++) {
            const want = l2 ? k.l2sq(rows[r]!, 2 * n * 4, 52) : k.dot(rows[r]!, 2 * n * 4, 52)
            expect(k.f32()[base / 4 + 16 + r]).toBe(want)
          }
        }
      }
      k.dots(2 * n * 4, 0, 9, 20, base + 128)
      for (let r = 0; r < 9; r++) expect(k.f32()[base / 4 + 32 + r]).toBe(k.dot(2 * n * 4, r * 80, 20))
    }
    expect(
      Buffer.from(a.u8().subarray(0, 4 * n * 4 + 4096)).equals(
        Buffer.from(b.u8().subarray(0, 4 * n * 4 + 4096)),
      ),
    ).toBe(true)
    expect(
      Buffer.from(a.u8().subarray(0, bytes.length)).equals(Buffer.from(b.u8().subarray(0, bytes.length))),
    ).toBe(true)
  })

  it('probebound: the same bounds and candidate lists in TypeScript and WASM, equal to the definition', () => {
    for (const [lists, seed] of [
      [1, 1],
      [2, 2],
      [7, 3],
      [245, 4],
    ] as const) {
      const prng = new Prng(seed)
      const stride = lists + (lists & 1)
      const dotsOff = 0
      const tableOff = stride * 8
      const paramsOff = tableOff + 5 * stride * 8
      const bestOff = paramsOff + 64
      const outOff = bestOff + stride * 8
      const bytes = new Uint8Array(outOff + stride * 4 + 16)
      const f64 = new Float64Array(bytes.buffer)
      for (let l = 0; l < stride; l++) {
        f64[l] = Math.round(gaussian(prng) * 1e6)
        f64[tableOff / 8 + l] = Math.abs(gaussian(prng)) * 1e-3
        f64[tableOff / 8 + stride + l] = Math.abs(gaussian(prng)) * 0.5
        f64[tableOff / 8 + 2 * stride + l] = Math.abs(gaussian(prng)) * 2
        f64[tableOff / 8 + 3 * stride + l] = Math.abs(gaussian(prng)) * 30
        f64[tableOff / 8 + 4 * stride + l] = 100 + gaussian(prng) * 40
      }
      for (const l2 of [1, 0]) {
        for (const nprobe of [1, Math.min(3, lists), lists]) {
          f64.set([0.7, 2.5, 0.01, 1e-5, l2, nprobe], paramsOff / 8)
          const [a, b] = both(bytes)
          const na = a.probebound(dotsOff, tableOff, stride, lists, paramsOff, bestOff, outOff)
          const nb = b.probebound(dotsOff, tableOff, stride, lists, paramsOff, bestOff, outOff)
          expect(na).toBe(nb)
          const lo = Array.from(a.f64().subarray(0, lists))
          expect(lo).toEqual(Array.from(b.f64().subarray(0, lists)))
          const got = Array.from(a.u32().subarray(outOff / 4, outOff / 4 + na))
          expect(got).toEqual(Array.from(b.u32().subarray(outOff / 4, outOff / 4 + nb)))
          // The definition, from the formula in kernels.wat.
          const want: number[] = []
          const his: number[] = []
          const los: number[] = []
          for (let l = 0; l < lists; l++) {
            const t = (i: number) => f64[tableOff / 8 + i * stride + l]!
            const approx = 0.7 * t(0) * f64[l]!
            const err = (2.5 * t(1) + 0.01 * t(2) + 1e-5 * t(3)) * 1.000001 + Math.abs(approx) * 1e-12
            if (l2) {
              const pad = (t(4) + 2 * Math.abs(approx) + 2 * err) * 1e-12
              los.push(t(4) - 2 * (approx + err) - pad)
              his.push(t(4) - 2 * (approx - err) + pad)
            } else {
              los.push(-(approx + err))
              his.push(-(approx - err))
            }
          }
          const cut = [...his].sort((x, y) => x - y)[nprobe - 1]!
          for (let l = 0; l < lists; l++) if (los[l]! <= cut) want.push(l)
          expect(lo).toEqual(los)
          expect(got).toEqual(want)
          // every list whose highest key is within the nprobe smallest is a candidate
          expect(got.length).toBeGreaterThanOrEqual(nprobe)
          if (nprobe === lists) expect(got.length).toBe(lists)
        }
      }
    }
  })

  it('distances8 gives what distances gives, bit for bit, eight rows at a time, then four, then one', () => {
    // The rerank's kernel: rows anywhere on the heap (listed by byte offset, in any order and
    // repeated), every count from 0 to 27 (three eights, a four and three more), both metrics.
    const prng = new Prng(41)
    const n = 52
    const rowsAt = 64 * 1024
    const outAt = rowsAt + 4096
    const floats = Float32Array.from({ length: rowsAt / 4 }, () => gaussian(prng) * 3)
    const offsets = Array.from({ length: 27 }, () => 16 * prng.below((rowsAt - n * 4) / 16))
    offsets[5] = offsets[2]!
    const bytes = new Uint8Array(outAt + 4096)
    bytes.set(new Uint8Array(floats.buffer))
    new Uint32Array(bytes.buffer, rowsAt, offsets.length).set(offsets)
    const [a, b] = both(bytes)
    const x = 4096
    for (const l2 of [0, 1]) {
      for (let count = 0; count <= offsets.length; count++) {
        for (const k of [a, b]) {
          k.f32().fill(-1, outAt / 4, outAt / 4 + 64)
          k.distances8(x, rowsAt, count, n, l2, outAt)
          const got = Array.from(k.f32().subarray(outAt / 4, outAt / 4 + count + 1))
          k.distances(x, rowsAt, count, n, l2, outAt)
          const want = Array.from(k.f32().subarray(outAt / 4, outAt / 4 + count + 1))
          // the same bits (toEqual on numbers compares with Object.is), and nothing past count
          expect(got).toEqual(want)
          expect(got[count]).toBe(-1)
          if (count > 0) {
            const last = offsets[count - 1]!
            expect(want[count - 1]).toBe(l2 ? k.l2sq(last, x, n) : k.dot(last, x, n))
          }
        }
        expect(
          Buffer.from(a.u8().subarray(outAt, outAt + 256)).equals(
            Buffer.from(b.u8().subarray(outAt, outAt + 256)),
          ),
        ).toBe(true)
      }
    }
  })

  it('gemm gives dot of every point and row, bit for bit, in TypeScript and WASM', () => {
    const prng = new Prng(21)
    const n = 36 // 9 steps of 4 lanes
    for (const [npts, count] of [
      [5, 11], // a point pair tail and a row tail
      [4, 8],
      [1, 3],
      [7, 4],
    ] as const) {
      const rowsAt = 0
      const pointsAt = count * n * 4
      const xsAt = pointsAt + 2 * npts * n * 4
      const outAt = xsAt + npts * 4
      const bytes = new Uint8Array(outAt + npts * count * 4)
      const f = new Float32Array(bytes.buffer)
      for (let i = 0; i < xsAt / 4; i++) f[i] = gaussian(prng) * 100
      // the points listed out of order and apart, as the callers' gathered rows are
      const xs = Array.from({ length: npts }, (_, p) => pointsAt + (npts - 1 - p) * 2 * n * 4)
      new Uint32Array(bytes.buffer).set(xs, xsAt / 4)
      const [a, b] = both(bytes)
      for (const k of [a, b]) {
        k.gemm(xsAt, npts, rowsAt, count, n, outAt)
        for (let p = 0; p < npts; p++) {
          for (let r = 0; r < count; r++) {
            expect(k.f32()[outAt / 4 + p * count + r]).toBe(k.dot(rowsAt + r * n * 4, xs[p]!, n))
          }
        }
      }
      expect(
        Buffer.from(a.u8().subarray(0, bytes.length)).equals(Buffer.from(b.u8().subarray(0, bytes.length))),
      ).toBe(true)
    }
  })

  it('fwht is the Walsh-Hadamard transform', () => {
    const k = wasm()
    k.reserve(64 * 4)
    const x = k.f32()
    x.fill(0, 0, 64)
    x[5] = 1
    k.fwht(0, 64)
    // H e_5: entry i is (-1)^popcount(i & 5)
    for (let i = 0; i < 64; i++) expect(x[i]).toBe((-1) ** ((i & 1) + ((i >> 2) & 1)))
  })
})

describe('rotation', () => {
  for (const paddedDim of [64, 128, 192, 832]) {
    it(`is orthogonal and identical in both kernels (padded dimension ${paddedDim})`, () => {
      const rotation = new Rotation(paddedDim, 4, rotationSigns(7, paddedDim))
      const prng = new Prng(paddedDim)
      const dim = paddedDim - 13 // zero-padded tail
      const x = Float32Array.from({ length: dim }, () => gaussian(prng))
      const ra = new Float32Array(paddedDim)
      const rb = new Float32Array(paddedDim)
      rotation.apply(wasm(), x, 0, dim, ra, 0)
      rotation.apply(js(), x, 0, dim, rb, 0)
      expect(Buffer.from(ra.buffer).equals(Buffer.from(rb.buffer))).toBe(true)
      const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, t) => s + t * t, 0))
      expect(Math.abs(norm(ra) / norm(x) - 1)).toBeLessThan(1e-5)
      // mixes: the padded coordinates are not zero any more
      expect(ra.subarray(dim).some((v) => Math.abs(v) > 1e-3)).toBe(true)
      // P^T P x = x, including zeros in the padding
      const back = new Float32Array(paddedDim)
      rotation.apply(wasm(), ra, 0, paddedDim, back, 0, true)
      for (let j = 0; j < dim; j++) expect(back[j]).toBeCloseTo(x[j]!, 4)
      for (let j = dim; j < paddedDim; j++) expect(Math.abs(back[j]!)).toBeLessThan(1e-4)
    })
  }
})
