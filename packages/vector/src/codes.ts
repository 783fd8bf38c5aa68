/**
 * The code block: the bytes that hold the codes of a group of vectors (one bucket of an
 * embedding field), in record order. Little-endian throughout; n vectors, D = paddedDim,
 * B = bits, F = the factor columns present:
 *
 * | offset | size | content |
 * | --- | --- | --- |
 * | 0 | 4 | magic `DVRQ` (0x44 0x56 0x52 0x51) |
 * | 4 | 1 | format version (1) |
 * | 5 | 1 | B, total bits per dimension (1..8) |
 * | 6 | 1 | metric: 0 l2, 1 ip, 2 cosine |
 * | 7 | 1 | flags, 0 |
 * | 8 | 4 | dim (u32) |
 * | 12 | 4 | D (u32) |
 * | 16 | 4 | n (u32) |
 * | 20 | 4 | lists of the spatial index (u32) |
 * | 24 | 8 | first 8 bytes of the spatial index's sha2-256 (its CID digest) |
 * | 32 | 8 | first 8 bytes of the compressor's sha2-256 |
 * | 40 | 4n | list of each vector (u32) |
 * | ... | 4n each | factor columns (f32): norm = \|o - c\|; x0 = <ō, o>; radial = <o - c, c> (ip and cosine only); x0ex = <ȳ, o> (B > 1 only) |
 * | ... | nD/8 | sign bits, D per vector, bit i of vector v at byte v D/8 + i/8, bit i mod 8 (LSB first) |
 * | ... | n(B-1)D/8 | extra bits: per vector, B-1 planes of D bits (plane p holds bit p of each extra code) |
 *
 * Nothing follows. The digests tie a block to the spatial index and compressor it was
 * encoded with; reading it against others is an `IncompatibleError`.
 */
import { type EncodedRows, emptyRows } from './codec.js'
import { CorruptObjectError, IncompatibleError, UnsupportedVersionError } from './errors.js'
import type { Metric, SpatialIndex, VectorCompressor } from './model.js'
import { digestOf } from './objects.js'

export const CODE_BLOCK_MAGIC = 0x51525644 // 'DVRQ' read as a little-endian u32
export const CODE_BLOCK_VERSION = 1
export const CODE_BLOCK_HEADER_BYTES = 40
const METRIC_CODES: Record<Metric, number> = { l2: 0, ip: 1, cosine: 2 }
const METRIC_NAMES: Metric[] = ['l2', 'ip', 'cosine']

function factorColumns(metric: Metric, bits: number): ('norm' | 'x0' | 'radial' | 'x0ex')[] {
  const columns: ('norm' | 'x0' | 'radial' | 'x0ex')[] = ['norm', 'x0']
  if (metric !== 'l2') columns.push('radial')
  if (bits > 1) columns.push('x0ex')
  return columns
}

/** Size in bytes of a code block of `count` vectors. */
export function codeBlockBytes(compressor: VectorCompressor, count: number): number {
  const D = compressor.paddedDim
  const F = factorColumns(compressor.metric, compressor.bits).length
  return CODE_BLOCK_HEADER_BYTES + 4 * count + 4 * F * count + (count * compressor.bits * D) / 8
}

export function writeCodeBlock(
  spatialIndex: SpatialIndex,
  compressor: VectorCompressor,
  rows: EncodedRows,
): Uint8Array {
  const n = rows.count
  const out = new Uint8Array(codeBlockBytes(compressor, n))
  const view = new DataView(out.buffer)
  view.setUint32(0, CODE_BLOCK_MAGIC, true)
  out[4] = CODE_BLOCK_VERSION
  out[5] = compressor.bits
  out[6] = METRIC_CODES[compressor.metric]
  view.setUint32(8, compressor.dim, true)
  view.setUint32(12, compressor.paddedDim, true)
  view.setUint32(16, n, true)
  view.setUint32(20, spatialIndex.lists, true)
  out.set(digestOf(spatialIndex).subarray(0, 8), 24)
  out.set(digestOf(compressor).subarray(0, 8), 32)
  let at = CODE_BLOCK_HEADER_BYTES
  for (let i = 0; i < n; i++, at += 4) view.setUint32(at, rows.lists[i]!, true)
  for (const column of factorColumns(compressor.metric, compressor.bits)) {
    const values = rows[column]
    for (let i = 0; i < n; i++, at += 4) view.setFloat32(at, values[i]!, true)
  }
  out.set(rows.signs, at)
  at += rows.signs.length
  out.set(rows.ex, at)
  return out
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i])
}

/**
 * Check a code block's header and size against the spatial index and compressor it must
 * belong to; its vector count and a view of it.
 */
function checkCodeBlock(
  spatialIndex: SpatialIndex,
  compressor: VectorCompressor,
  block: Uint8Array,
): { n: number; lists: number; view: DataView; what: string; where: string } {
  const what = 'Code block'
  const where = `of ${block?.length ?? 0} bytes`
  if (!(block instanceof Uint8Array) || block.length < CODE_BLOCK_HEADER_BYTES) {
    throw new CorruptObjectError(what, where, `it is shorter than the ${CODE_BLOCK_HEADER_BYTES}-byte header`)
  }
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength)
  if (view.getUint32(0, true) !== CODE_BLOCK_MAGIC) {
    throw new CorruptObjectError(what, where, 'it does not start with DVRQ')
  }
  const version = block[4]!
  if (version > CODE_BLOCK_VERSION) throw new UnsupportedVersionError(what, version, CODE_BLOCK_VERSION)
  if (version !== CODE_BLOCK_VERSION || block[7] !== 0) {
    throw new CorruptObjectError(what, where, `version ${version} / flags ${block[7]} are not valid`)
  }
  const bits = block[5]!
  const metric = METRIC_NAMES[block[6]!]
  const dim = view.getUint32(8, true)
  const paddedDim = view.getUint32(12, true)
  const n = view.getUint32(16, true)
  const lists = view.getUint32(20, true)
  const mismatch = (field: string, expected: unknown, actual: unknown): never => {
    throw new IncompatibleError(
      `The code block was encoded with another ${field === 'lists' || field === 'spatial index' ? 'spatial index' : 'compressor'}`,
      `${field} ${String(expected)}`,
      `${field} ${String(actual)}`,
    )
  }
  if (metric === undefined) throw new CorruptObjectError(what, where, `metric code ${block[6]} is unknown`)
  if (bits !== compressor.bits) mismatch('bits', compressor.bits, bits)
  if (metric !== compressor.metric) mismatch('metric', compressor.metric, metric)
  if (dim !== compressor.dim) mismatch('dim', compressor.dim, dim)
  if (paddedDim !== compressor.paddedDim) mismatch('paddedDim', compressor.paddedDim, paddedDim)
  if (lists !== spatialIndex.lists) mismatch('lists', spatialIndex.lists, lists)
  if (!sameBytes(block.subarray(24, 32), digestOf(spatialIndex).subarray(0, 8))) {
    mismatch('spatial index', 'of this index', 'of another index (digest differs)')
  }
  if (!sameBytes(block.subarray(32, 40), digestOf(compressor).subarray(0, 8))) {
    mismatch(
      'compressor digest',
      'of this compressor',
      'of another compressor (rotation seed or bits differ)',
    )
  }
  const expected = codeBlockBytes(compressor, n)
  if (block.length !== expected) {
    throw new CorruptObjectError(what, where, `${n} vectors need exactly ${expected} bytes`)
  }
  return { n, lists, view, what, where }
}

/** Parse and check a code block against the spatial index and compressor it must belong to. */
export function readCodeBlock(
  spatialIndex: SpatialIndex,
  compressor: VectorCompressor,
  block: Uint8Array,
): EncodedRows {
  const { n, lists, view, what, where } = checkCodeBlock(spatialIndex, compressor, block)
  const { paddedDim, bits, metric } = compressor
  const rows = emptyRows(n, paddedDim, bits)
  let at = CODE_BLOCK_HEADER_BYTES
  for (let i = 0; i < n; i++, at += 4) {
    const list = view.getUint32(at, true)
    if (list >= lists) throw new CorruptObjectError(what, where, `vector ${i} names list ${list} of ${lists}`)
    rows.lists[i] = list
  }
  for (const column of factorColumns(metric, bits)) {
    const values = rows[column]
    for (let i = 0; i < n; i++, at += 4) {
      const v = view.getFloat32(at, true)
      const ok =
        column === 'radial'
          ? Number.isFinite(v)
          : column === 'norm'
            ? Number.isFinite(v) && v >= 0
            : v > 0 && v <= 1.0001
      if (!ok) throw new CorruptObjectError(what, where, `vector ${i} has ${column} = ${v}`)
      values[i] = v
    }
  }
  rows.signs.set(block.subarray(at, at + rows.signs.length))
  at += rows.signs.length
  rows.ex.set(block.subarray(at, at + rows.ex.length))
  return rows
}

/**
 * Vectors per list over code blocks (each one's header, size and list column checked as
 * `readCodeBlock` checks them): the `listCapacity` that builds an index from those blocks
 * without growing a list.
 */
export function listSizesOfCodes(
  spatialIndex: SpatialIndex,
  compressor: VectorCompressor,
  blocks: Iterable<Uint8Array>,
): Uint32Array {
  const sizes = new Uint32Array(spatialIndex.lists)
  for (const block of blocks) {
    // The header and the list column only: the rest is read when the block is added.
    const { n, lists, view, what, where } = checkCodeBlock(spatialIndex, compressor, block)
    for (let i = 0, at = CODE_BLOCK_HEADER_BYTES; i < n; i++, at += 4) {
      const list = view.getUint32(at, true)
      if (list >= lists)
        throw new CorruptObjectError(what, where, `vector ${i} names list ${list} of ${lists}`)
      sizes[list]!++
    }
  }
  return sizes
}
