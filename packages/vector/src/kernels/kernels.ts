/**
 * The hot loops, twice: WebAssembly SIMD (kernels.wat) and plain TypeScript, over the same
 * heap layout. Both give identical results: integers exactly, floats bit for bit (the
 * TypeScript twins round every step to f32 with `Math.fround`, in the order the SIMD lanes
 * use; one f64 operation on two f32 values rounded once to f32 equals the f32 operation).
 * So an index, a trained spatial index or a code block never depends on which ran.
 *
 * A `Kernels` owns one heap (the WebAssembly memory, or an ArrayBuffer for the TypeScript
 * twins) addressed by byte offsets; callers lay it out and must re-read the views after
 * `reserve`, which may move the buffer.
 */
import { WasmUnavailableError } from '../errors.js'
import { KERNELS_WASM_BASE64 } from './kernels-wasm.js'
import { kmeansTwin, kscoredTwin } from './kmeans.js'

export type KernelKind = 'wasm' | 'js'
/** Which kernels to run: WebAssembly SIMD where the runtime has it (`'auto'`), or one of them. */
export type KernelChoice = 'auto' | KernelKind

export interface Kernels {
  readonly kind: KernelKind
  /** Heap size in bytes. */
  readonly size: number
  /** Make the heap at least `bytes` long (never shrinks; contents kept). */
  reserve(bytes: number): void
  u8(): Uint8Array
  u32(): Uint32Array
  f32(): Float32Array
  f64(): Float64Array
  /** See kernels.wat for each function's contract. */
  fastscan(codes: number, nblocks: number, lut: number, groups: number, out: number): void
  fastscan2(
    codes: number,
    nblocks: number,
    lut: number,
    lut2: number,
    groups: number,
    out: number,
    out2: number,
  ): void
  lut4(rq: number, rc: number, dim: number, dither: number, qp: number, lut: number, stats: number): void
  quant16(x: number, n: number, qmax: number, out: number, stats: number): void
  dots16(x: number, rows: number, count: number, n: number, out: number): void
  /** `dots16` for two rows at once, into `out` and `out2`. */
  dots16x2(x: number, x2: number, rows: number, count: number, n: number, out: number, out2: number): void
  probebound(
    dots: number,
    table: number,
    stride: number,
    lists: number,
    params: number,
    best: number,
    out: number,
  ): number
  planes8(qp: number, dim: number, dither: number, planes: number, stride: number, stats: number): void
  screen(
    sums: number,
    factors: number,
    count: number,
    params: number,
    idx: number,
    est: number,
    bound: number,
  ): number
  exdot(codes: number, planes: number, pairs: number, q: number): number
  elkan(
    lower: number,
    drift: number,
    gaps: number,
    lists: number,
    u: number,
    skip: number,
    out: number,
  ): number
  /** One k-means assignment pass under Elkan's bounds; `params` as kernels.wat and kmeans.ts lay it out. */
  kmeans(params: number): number
  /** k-means' full pass over a block scored by `gemm`; `params` as for `kmeans`. */
  kscored(params: number): number
  fwht(p: number, n: number): void
  mul(x: number, s: number, n: number): void
  scale(x: number, n: number, f: number): void
  kac(x: number, half: number): void
  dot(a: number, b: number, n: number): number
  l2sq(a: number, b: number, n: number): number
  dots(x: number, rows: number, count: number, n: number, out: number): void
  gemm(xs: number, npts: number, rows: number, count: number, n: number, out: number): void
  distances(x: number, rows: number, count: number, n: number, l2: number, out: number): void
  /** `distances`, bit for bit, eight rows at a time where it can (the rerank's rows). */
  distances8(x: number, rows: number, count: number, n: number, l2: number, out: number): void
}

const PAGE = 65536
const MAX_HEAP = 65536 * PAGE // wasm32: 4 GiB

function grownSize(current: number, wanted: number): number {
  if (wanted > MAX_HEAP) {
    throw new RangeError(
      `@dreamdb/vector needs a ${wanted}-byte heap, over the 4 GiB a WebAssembly memory can hold; split the index`,
    )
  }
  let size = Math.max(current, PAGE)
  while (size < wanted) size = Math.min(MAX_HEAP, Math.ceil((size * 1.5) / PAGE) * PAGE)
  return size
}

abstract class Views {
  #buffer: ArrayBuffer | null = null
  #u8 = new Uint8Array(0)
  #u32 = new Uint32Array(0)
  #f32 = new Float32Array(0)
  #f64 = new Float64Array(0)
  protected abstract buffer(): ArrayBuffer
  get size(): number {
    return this.buffer().byteLength
  }
  /**
   * The views are rebuilt only after `reserve` grew the heap (the one place it moves): reading
   * a WebAssembly memory's `buffer` costs more than a search's per-list arithmetic.
   */
  protected invalidate(): void {
    this.#buffer = null
  }
  #refresh(): void {
    if (this.#buffer !== null) return
    const buffer = this.buffer()
    this.#buffer = buffer
    this.#u8 = new Uint8Array(buffer)
    this.#u32 = new Uint32Array(buffer)
    this.#f32 = new Float32Array(buffer)
    this.#f64 = new Float64Array(buffer)
  }
  u8(): Uint8Array {
    this.#refresh()
    return this.#u8
  }
  u32(): Uint32Array {
    this.#refresh()
    return this.#u32
  }
  f32(): Float32Array {
    this.#refresh()
    return this.#f32
  }
  f64(): Float64Array {
    this.#refresh()
    return this.#f64
  }
}

/** The parts of the WebAssembly JS API used here (not in the ES lib typings). */
interface WasmMemory {
  readonly buffer: ArrayBuffer
  grow(pages: number): number
}
type WasmModule = object
interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule
  Instance: new (module: WasmModule, imports: object) => { exports: unknown }
}
const wasmApi = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly

/** The module's exports: its memory and every kernel, with the signatures of `Kernels`. */
type WasmExports = { memory: WasmMemory } & Omit<
  Kernels,
  'kind' | 'size' | 'reserve' | 'u8' | 'u32' | 'f32' | 'f64'
>

class WasmKernels extends Views implements Kernels {
  readonly kind = 'wasm'
  readonly #x: WasmExports
  constructor(module: WasmModule) {
    super()
    this.#x = new wasmApi!.Instance(module, {}).exports as WasmExports
  }
  protected buffer(): ArrayBuffer {
    return this.#x.memory.buffer
  }
  reserve(bytes: number): void {
    const current = this.#x.memory.buffer.byteLength
    if (bytes <= current) return
    this.#x.memory.grow((grownSize(current, bytes) - current) / PAGE)
    this.invalidate()
  }
  fastscan(codes: number, nblocks: number, lut: number, groups: number, out: number): void {
    this.#x.fastscan(codes, nblocks, lut, groups, out)
  }
  fastscan2(
    codes: number,
    nblocks: number,
    lut: number,
    lut2: number,
    groups: number,
    out: number,
    out2: number,
  ): void {
    this.#x.fastscan2(codes, nblocks, lut, lut2, groups, out, out2)
  }
  lut4(rq: number, rc: number, dim: number, dither: number, qp: number, lut: number, stats: number): void {
    this.#x.lut4(rq, rc, dim, dither, qp, lut, stats)
  }
  quant16(x: number, n: number, qmax: number, out: number, stats: number): void {
    this.#x.quant16(x, n, qmax, out, stats)
  }
  dots16(x: number, rows: number, count: number, n: number, out: number): void {
    this.#x.dots16(x, rows, count, n, out)
  }
  dots16x2(x: number, x2: number, rows: number, count: number, n: number, out: number, out2: number): void {
    this.#x.dots16x2(x, x2, rows, count, n, out, out2)
  }
  probebound(
    dots: number,
    table: number,
    stride: number,
    lists: number,
    params: number,
    best: number,
    out: number,
  ): number {
    return this.#x.probebound(dots, table, stride, lists, params, best, out)
  }
  planes8(qp: number, dim: number, dither: number, planes: number, stride: number, stats: number): void {
    this.#x.planes8(qp, dim, dither, planes, stride, stats)
  }
  screen(
    sums: number,
    factors: number,
    count: number,
    params: number,
    idx: number,
    est: number,
    bound: number,
  ): number {
    return this.#x.screen(sums, factors, count, params, idx, est, bound)
  }
  exdot(codes: number, planes: number, pairs: number, q: number): number {
    return this.#x.exdot(codes, planes, pairs, q)
  }
  elkan(
    lower: number,
    drift: number,
    gaps: number,
    lists: number,
    u: number,
    skip: number,
    out: number,
  ): number {
    return this.#x.elkan(lower, drift, gaps, lists, u, skip, out)
  }
  kmeans(params: number): number {
    return this.#x.kmeans(params)
  }
  kscored(params: number): number {
    return this.#x.kscored(params)
  }
  fwht(p: number, n: number): void {
    this.#x.fwht(p, n)
  }
  mul(x: number, s: number, n: number): void {
    this.#x.mul(x, s, n)
  }
  scale(x: number, n: number, f: number): void {
    this.#x.scale(x, n, f)
  }
  kac(x: number, half: number): void {
    this.#x.kac(x, half)
  }
  dot(a: number, b: number, n: number): number {
    return this.#x.dot(a, b, n)
  }
  l2sq(a: number, b: number, n: number): number {
    return this.#x.l2sq(a, b, n)
  }
  dots(x: number, rows: number, count: number, n: number, out: number): void {
    this.#x.dots(x, rows, count, n, out)
  }
  gemm(xs: number, npts: number, rows: number, count: number, n: number, out: number): void {
    this.#x.gemm(xs, npts, rows, count, n, out)
  }
  distances(x: number, rows: number, count: number, n: number, l2: number, out: number): void {
    this.#x.distances(x, rows, count, n, l2, out)
  }
  distances8(x: number, rows: number, count: number, n: number, l2: number, out: number): void {
    this.#x.distances8(x, rows, count, n, l2, out)
  }
}

/** SWAR popcount of a 32-bit word. */
function popcount32(x: number): number {
  x -= (x >>> 1) & 0x55555555
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333)
  x = (x + (x >>> 4)) & 0x0f0f0f0f
  return Math.imul(x, 0x01010101) >>> 24
}

const fround = Math.fround

class JsKernels extends Views implements Kernels {
  readonly kind = 'js'
  #heap = new ArrayBuffer(PAGE)
  readonly #acc = new Uint32Array(32)
  protected buffer(): ArrayBuffer {
    return this.#heap
  }
  reserve(bytes: number): void {
    if (bytes <= this.#heap.byteLength) return
    const next = new ArrayBuffer(grownSize(this.#heap.byteLength, bytes))
    new Uint8Array(next).set(new Uint8Array(this.#heap))
    this.#heap = next
    this.invalidate()
  }
  fastscan(codes: number, nblocks: number, lut: number, groups: number, out: number): void {
    const u8 = this.u8()
    const u32 = this.u32()
    const acc = this.#acc
    let cp = codes
    for (let b = 0; b < nblocks; b++) {
      acc.fill(0)
      let lp = lut
      for (let g = 0; g < groups; g++) {
        for (let j = 0; j < 16; j++) {
          const c = u8[cp + j]!
          acc[j]! += u8[lp + (c & 15)]!
          acc[j + 16]! += u8[lp + (c >>> 4)]!
        }
        cp += 16
        lp += 16
      }
      u32.set(acc, (out >>> 2) + b * 32)
    }
  }
  fastscan2(
    codes: number,
    nblocks: number,
    lut: number,
    lut2: number,
    groups: number,
    out: number,
    out2: number,
  ): void {
    // Integer sums: one query after the other gives what the kernel gives for both at once.
    this.fastscan(codes, nblocks, lut, groups, out)
    this.fastscan(codes, nblocks, lut2, groups, out2)
  }
  quant16(x: number, n: number, qmax: number, out: number, stats: number): void {
    const f32 = this.f32()
    const at = x >>> 2
    let m = 0
    for (let j = 0; j < n; j++) m = Math.max(m, Math.abs(f32[at + j]!))
    const inv = m > 0 ? Math.fround(Math.fround(qmax) / m) : 0
    f32[stats >>> 2] = m
    f32[(stats >>> 2) + 1] = inv
    const i16 = new Int16Array(this.u8().buffer, out, n)
    for (let j = 0; j < n; j++) {
      const v = nearestEven(Math.fround(f32[at + j]! * inv))
      i16[j] = Math.max(-32768, Math.min(32767, v))
    }
  }
  dots16(x: number, rows: number, count: number, n: number, out: number): void {
    const i16 = new Int16Array(this.u8().buffer)
    const f64 = this.f64()
    const xa = x >>> 1
    for (let r = 0; r < count; r++) {
      const ra = (rows >>> 1) + r * n
      // Integers far under 2^53: exact in any order, as the kernel's lanes are.
      let sum = 0
      for (let j = 0; j < n; j++) sum += i16[xa + j]! * i16[ra + j]!
      f64[(out >>> 3) + r] = sum
    }
  }
  dots16x2(x: number, x2: number, rows: number, count: number, n: number, out: number, out2: number): void {
    this.dots16(x, rows, count, n, out)
    this.dots16(x2, rows, count, n, out2)
  }
  probebound(
    dots: number,
    table: number,
    stride: number,
    lists: number,
    params: number,
    best: number,
    out: number,
  ): number {
    const f64 = this.f64()
    const u32 = this.u32()
    const p = params >>> 3
    const sq = f64[p]!
    const m = f64[p + 1]!
    const halfSq = f64[p + 2]!
    const gamma = f64[p + 3]!
    const l2 = f64[p + 4]! !== 0
    const nprobe = f64[p + 5]!
    const d = dots >>> 3
    const t = table >>> 3
    const kept = best >>> 3
    let filled = 0
    for (let l = 0; l < lists; l++) {
      const approx = sq * f64[t + l]! * f64[d + l]!
      const abs = Math.abs(approx)
      const err =
        (m * f64[t + stride + l]! + halfSq * f64[t + 2 * stride + l]! + gamma * f64[t + 3 * stride + l]!) *
          1.000001 +
        abs * 1e-12
      let lo: number
      let hi: number
      if (l2) {
        const norm = f64[t + 4 * stride + l]!
        const pad = (norm + 2 * abs + 2 * err) * 1e-12
        lo = norm - 2 * (approx + err) - pad
        hi = norm - 2 * (approx - err) + pad
      } else {
        lo = -(approx + err)
        hi = -(approx - err)
      }
      f64[d + l] = lo
      if (filled < nprobe || hi < f64[kept + nprobe - 1]!) {
        let i = filled < nprobe ? filled++ : nprobe - 1
        while (i > 0 && f64[kept + i - 1]! > hi) {
          f64[kept + i] = f64[kept + i - 1]!
          i--
        }
        f64[kept + i] = hi
      }
    }
    const cut = f64[kept + nprobe - 1]!
    let n = 0
    for (let l = 0; l < lists; l++) if (f64[d + l]! <= cut) u32[(out >>> 2) + n++] = l
    return n
  }
  lut4(rq: number, rc: number, dim: number, dither: number, qp: number, lut: number, stats: number): void {
    const f32 = this.f32()
    const f64 = this.f64()
    const u8 = this.u8()
    const q = qp >>> 3
    // Two accumulators and two running extremes, like the kernel's f64x2 lanes.
    let sq0 = 0
    let sq1 = 0
    let lo0 = Number.POSITIVE_INFINITY
    let lo1 = Number.POSITIVE_INFINITY
    let hi0 = Number.NEGATIVE_INFINITY
    let hi1 = Number.NEGATIVE_INFINITY
    for (let j = 0; j < dim; j += 2) {
      const v0 = f32[(rq >>> 2) + j]! - f32[(rc >>> 2) + j]!
      const v1 = f32[(rq >>> 2) + j + 1]! - f32[(rc >>> 2) + j + 1]!
      f64[q + j] = v0
      f64[q + j + 1] = v1
      sq0 += v0 * v0
      sq1 += v1 * v1
      if (v0 < lo0) lo0 = v0
      if (v1 < lo1) lo1 = v1
      if (hi0 < v0) hi0 = v0
      if (hi1 < v1) hi1 = v1
    }
    // biome-ignore lint/complexity/useMathMinMax: the kernel's comparison, which picks the same zero of -0 and +0
    const lo = lo1 < lo0 ? lo1 : lo0
    // biome-ignore lint/complexity/useMathMinMax: as above
    const hi = hi0 < hi1 ? hi1 : hi0
    const delta = (hi - lo) / 15
    const s = stats >>> 3
    f64[s] = sq0 + sq1
    f64[s + 1] = lo
    f64[s + 2] = delta
    f64[s + 4] = hi
    let sum = 0
    const d = dither >>> 3
    const inverse = 1 / delta
    for (let j = 0; j < dim; j += 4) {
      const at = lut + j * 4
      if (!(delta > 0)) {
        u8.fill(0, at, at + 16)
        continue
      }
      u8[at] = 0
      for (let t = 0; t < 4; t++) {
        const raw = Math.floor((f64[q + j + t]! - lo) * inverse + f64[d + j + t]!)
        const x = Math.min(raw, 15)
        sum += x
        // entries n with bit t set, built from those without it
        for (let n = 1 << t; n < 2 << t; n++) u8[at + n] = u8[at + n - (1 << t)]! + x
      }
    }
    f64[s + 3] = sum
  }
  planes8(qp: number, dim: number, dither: number, planes: number, stride: number, stats: number): void {
    const f64 = this.f64()
    const u8 = this.u8()
    const s = stats >>> 3
    const q = qp >>> 3
    const d = dither >>> 3
    const lo = f64[s + 1]!
    const delta = (f64[s + 4]! - lo) / 255
    const inverse = 1 / delta
    f64[s + 5] = delta
    let sum = 0
    for (let j = 0; j < dim; j += 8) {
      for (let p = 0; p < 8; p++) u8[planes + p * stride + (j >>> 3)] = 0
      for (let t = 0; t < 8; t++) {
        const x =
          delta > 0 ? Math.min(255, Math.floor((f64[q + j + t]! - lo) * inverse + f64[d + j + t]!)) : 0
        sum += x
        for (let p = 0; p < 8; p++) if ((x >>> p) & 1) u8[planes + p * stride + (j >>> 3)]! |= 1 << t
      }
    }
    f64[s + 6] = sum
  }
  elkan(
    lower: number,
    drift: number,
    gaps: number,
    lists: number,
    u: number,
    skip: number,
    out: number,
  ): number {
    const f32 = this.f32()
    const f64 = this.f64()
    const u32 = this.u32()
    let n = 0
    for (let l = 0; l < lists; l++) {
      if (u > f32[(gaps >>> 2) + l]! && u + f64[(drift >>> 3) + l]! > f32[(lower >>> 2) + l]! && l !== skip) {
        u32[(out >>> 2) + n++] = l
      }
    }
    return n
  }
  kmeans(params: number): number {
    return kmeansTwin(this, params)
  }
  kscored(params: number): number {
    return kscoredTwin(this, params)
  }
  screen(
    sums: number,
    factors: number,
    count: number,
    params: number,
    idx: number,
    est: number,
    bound: number,
  ): number {
    const f32 = this.f32()
    const f64 = this.f64()
    const u32 = this.u32()
    const p = params >>> 3
    const a = f64[p]!
    const b = f64[p + 1]!
    const c = f64[p + 2]!
    const offset = f64[p + 3]!
    const e = f64[p + 4]!
    const f = f64[p + 5]!
    const threshold = f64[p + 6]!
    let n = 0
    for (let v = 0; v < count; v++) {
      const at = (factors >>> 2) + (v >>> 5) * 128 + (v & 31)
      const scale = f32[at + 32]!
      const err = f32[at + 64]!
      const x = f32[at]! + offset + scale * (a * f32[at + 96]! + b * u32[(sums >>> 2) + v]! + c)
      const bnd = Math.sqrt(err * err * e + scale * scale * f)
      if (x - bnd < threshold) {
        u32[(idx >>> 2) + n] = v
        f64[(est >>> 3) + n] = x
        f64[(bound >>> 3) + n] = bnd
        n++
      }
    }
    return n
  }
  exdot(codes: number, planes: number, pairs: number, q: number): number {
    const u32 = this.u32()
    const words = pairs * 4
    const c0 = codes >>> 2
    const q0 = q >>> 2
    let total = 0
    for (let j = 0; j < planes; j++) {
      let plane = 0
      const cp = c0 + j * words
      for (let w = 0; w < words; w++) {
        const c = u32[cp + w]!
        if (c === 0) continue
        let s = 0
        for (let k = 0; k < 8; k++) s += popcount32(c & u32[q0 + k * words + w]!) << k
        plane += s
      }
      total += plane * 2 ** j
    }
    return total
  }
  fwht(p: number, n: number): void {
    const x = this.f32()
    const o = p >>> 2
    for (let h = 1; h < n; h *= 2) {
      for (let blk = o; blk < o + n; blk += 2 * h) {
        for (let i = blk; i < blk + h; i++) {
          const a = x[i]!
          const b = x[i + h]!
          x[i] = a + b
          x[i + h] = a - b
        }
      }
    }
  }
  mul(xp: number, sp: number, n: number): void {
    const x = this.f32()
    const o = xp >>> 2
    const s = sp >>> 2
    for (let i = 0; i < n; i++) x[o + i] = x[o + i]! * x[s + i]!
  }
  scale(xp: number, n: number, f: number): void {
    const x = this.f32()
    const o = xp >>> 2
    const k = fround(f)
    for (let i = o; i < o + n; i++) x[i] = x[i]! * k
  }
  kac(xp: number, half: number): void {
    const x = this.f32()
    const o = xp >>> 2
    for (let i = o; i < o + half; i++) {
      const a = x[i]!
      const b = x[i + half]!
      x[i] = a + b
      x[i + half] = a - b
    }
  }
  dot(ap: number, bp: number, n: number): number {
    const x = this.f32()
    const a = ap >>> 2
    const b = bp >>> 2
    let s0 = 0
    let s1 = 0
    let s2 = 0
    let s3 = 0
    for (let i = 0; i < n; i += 4) {
      s0 = fround(s0 + fround(x[a + i]! * x[b + i]!))
      s1 = fround(s1 + fround(x[a + i + 1]! * x[b + i + 1]!))
      s2 = fround(s2 + fround(x[a + i + 2]! * x[b + i + 2]!))
      s3 = fround(s3 + fround(x[a + i + 3]! * x[b + i + 3]!))
    }
    return fround(fround(s0 + s1) + fround(s2 + s3))
  }
  l2sq(ap: number, bp: number, n: number): number {
    const x = this.f32()
    const a = ap >>> 2
    const b = bp >>> 2
    let s0 = 0
    let s1 = 0
    let s2 = 0
    let s3 = 0
    for (let i = 0; i < n; i += 4) {
      const d0 = fround(x[a + i]! - x[b + i]!)
      const d1 = fround(x[a + i + 1]! - x[b + i + 1]!)
      const d2 = fround(x[a + i + 2]! - x[b + i + 2]!)
      const d3 = fround(x[a + i + 3]! - x[b + i + 3]!)
      s0 = fround(s0 + fround(d0 * d0))
      s1 = fround(s1 + fround(d1 * d1))
      s2 = fround(s2 + fround(d2 * d2))
      s3 = fround(s3 + fround(d3 * d3))
    }
    return fround(fround(s0 + s1) + fround(s2 + s3))
  }
  dots(x: number, rows: number, count: number, n: number, out: number): void {
    const f32 = this.f32()
    for (let r = 0; r < count; r++) f32[(out >>> 2) + r] = this.dot(x, rows + r * n * 4, n)
  }
  gemm(xs: number, npts: number, rows: number, count: number, n: number, out: number): void {
    const u32 = this.u32()
    const f32 = this.f32()
    for (let p = 0; p < npts; p++) {
      const x = u32[(xs >>> 2) + p]!
      for (let r = 0; r < count; r++) f32[(out >>> 2) + p * count + r] = this.dot(x, rows + r * n * 4, n)
    }
  }
  distances(x: number, rows: number, count: number, n: number, l2: number, out: number): void {
    const u32 = this.u32()
    const f32 = this.f32()
    for (let r = 0; r < count; r++) {
      const at = u32[(rows >>> 2) + r]!
      f32[(out >>> 2) + r] = l2 ? this.l2sq(at, x, n) : this.dot(at, x, n)
    }
  }
  distances8(x: number, rows: number, count: number, n: number, l2: number, out: number): void {
    this.distances(x, rows, count, n, l2, out)
  }
}

let wasmModule: WasmModule | Error | undefined

function compiledWasm(): WasmModule | Error {
  if (wasmModule === undefined) {
    try {
      if (wasmApi === undefined) throw new Error('no WebAssembly in this runtime')
      const binary = atob(KERNELS_WASM_BASE64)
      const bytes = new Uint8Array(binary.length)
      for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i)
      wasmModule = new wasmApi.Module(bytes)
    } catch (cause) {
      wasmModule = cause instanceof Error ? cause : new Error(String(cause))
    }
  }
  return wasmModule
}

/** Whether this runtime runs the WebAssembly SIMD kernels. */
export function wasmAvailable(): boolean {
  return !(compiledWasm() instanceof Error)
}

/** A fresh kernel instance with its own heap. */
export function createKernels(choice: KernelChoice = 'auto'): Kernels {
  if (choice === 'js') return new JsKernels()
  const module = compiledWasm()
  if (module instanceof Error) {
    if (choice === 'wasm') throw new WasmUnavailableError({ cause: module })
    return new JsKernels()
  }
  return new WasmKernels(module)
}

/** x rounded to the nearest integer, ties to even (f32x4.nearest). */
function nearestEven(x: number): number {
  const f = Math.floor(x)
  const d = x - f
  if (d > 0.5) return f + 1
  if (d < 0.5) return f
  return f % 2 === 0 ? f : f + 1
}
