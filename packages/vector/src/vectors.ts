/** Boundary checks and normalisation of vectors handed to the public functions. */
import { DimensionMismatchError, InvalidOptionError, NonFiniteValueError, ZeroVectorError } from './errors.js'
import { MAX_DIM, METRICS, type Metric } from './model.js'

/**
 * Vectors: one flat `Float32Array` of `count * dim` values (row-major), or a list of
 * vectors (`Float32Array` or `number[]`), each of length `dim`.
 */
export type VectorsInput = Float32Array | readonly (Float32Array | readonly number[])[]

/** A vector: a `Float32Array` or `number[]` of length `dim`. */
export type VectorInput = Float32Array | readonly number[]

export function checkDim(dim: unknown): number {
  if (typeof dim !== 'number' || !Number.isInteger(dim) || dim < 1 || dim > MAX_DIM) {
    throw new InvalidOptionError('dim', dim, `must be an integer from 1 to ${MAX_DIM}`)
  }
  return dim
}

export function checkMetric(metric: unknown): Metric {
  if (!METRICS.includes(metric as Metric)) {
    throw new InvalidOptionError('metric', metric, `must be one of ${METRICS.join(', ')}`)
  }
  return metric as Metric
}

export function checkInteger(option: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(option, value, `must be an integer from ${min} to ${max}`)
  }
  return value
}

/**
 * Copy `input` into one row-major `Float32Array`, checking dimensions and finiteness; under
 * cosine every row is scaled to unit length (a zero row is a `ZeroVectorError`).
 */
export function toMatrix(input: VectorsInput, dim: number, metric: Metric, what: string): Float32Array {
  let out: Float32Array
  if (input instanceof Float32Array) {
    if (input.length % dim !== 0) {
      throw new DimensionMismatchError(
        `${what} (a flat Float32Array of ${input.length} values)`,
        dim,
        input.length % dim,
      )
    }
    out = input.slice()
  } else {
    if (!Array.isArray(input))
      throw new InvalidOptionError(what, typeof input, 'must be a Float32Array or an array of vectors')
    out = new Float32Array(input.length * dim)
    for (let i = 0; i < input.length; i++) {
      const row = input[i] as VectorInput
      if (row === null || typeof row !== 'object' || typeof row.length !== 'number') {
        throw new InvalidOptionError(`${what} ${i}`, typeof row, 'must be a Float32Array or number[]')
      }
      if (row.length !== dim) throw new DimensionMismatchError(`${what} ${i}`, dim, row.length)
      out.set(row, i * dim)
    }
  }
  const count = out.length / dim
  for (let i = 0; i < count; i++) prepareRow(out, i * dim, dim, metric, what, i)
  return out
}

/**
 * Check a flat `Float32Array` of rows without copying it (finite; not zero under cosine), for
 * a caller that copies the rows once anyway: returns each row's 1 / norm under cosine (the
 * factor `toMatrix` scales by, so scaling the copy gives the same bits), else null.
 */
export function checkRows(
  input: Float32Array,
  dim: number,
  metric: Metric,
  what: string,
): Float64Array | null {
  if (input.length % dim !== 0) {
    throw new DimensionMismatchError(
      `${what} (a flat Float32Array of ${input.length} values)`,
      dim,
      input.length % dim,
    )
  }
  const count = input.length / dim
  const scales = metric === 'cosine' ? new Float64Array(count) : null
  for (let i = 0; i < count; i++) {
    const at = i * dim
    // The squares' sum is finite exactly when every value is (a float32 squared stays far
    // below the float64 range), so the values are looked at one by one only for an error.
    let norm2 = 0
    if (scales !== null) for (let j = 0; j < dim; j++) norm2 += input[at + j]! * input[at + j]!
    else {
      // Only finiteness counts here: four independent sums run 1.5x as fast as one (784-d).
      let s1 = 0
      let s2 = 0
      let s3 = 0
      let j = 0
      for (; j + 4 <= dim; j += 4) {
        norm2 += input[at + j]! * input[at + j]!
        s1 += input[at + j + 1]! * input[at + j + 1]!
        s2 += input[at + j + 2]! * input[at + j + 2]!
        s3 += input[at + j + 3]! * input[at + j + 3]!
      }
      for (; j < dim; j++) norm2 += input[at + j]! * input[at + j]!
      norm2 += s1 + s2 + s3
    }
    if (!Number.isFinite(norm2)) {
      for (let j = 0; j < dim; j++)
        if (!Number.isFinite(input[at + j]!)) throw new NonFiniteValueError(what, i, j, input[at + j]!)
    }
    if (scales !== null) {
      if (norm2 === 0) throw new ZeroVectorError(what, i)
      scales[i] = 1 / Math.sqrt(norm2)
    }
  }
  return scales
}

/** Check one row in place (finite; unit length under cosine). */
function prepareRow(
  data: Float32Array,
  offset: number,
  dim: number,
  metric: Metric,
  what: string,
  index: number,
): void {
  let norm2 = 0
  for (let j = 0; j < dim; j++) {
    const v = data[offset + j]!
    if (!Number.isFinite(v)) throw new NonFiniteValueError(what, index, j, v)
    norm2 += v * v
  }
  if (metric === 'cosine') {
    if (norm2 === 0) throw new ZeroVectorError(what, index)
    const inv = 1 / Math.sqrt(norm2)
    for (let j = 0; j < dim; j++) data[offset + j] = data[offset + j]! * inv
  }
}

/** One query vector, checked and (under cosine) normalised. */
export function toQuery(query: VectorInput, dim: number, metric: Metric): Float32Array {
  // The constructor copies a typed array in one block (`from` goes element by element).
  const out = new Float32Array(checkQueryShape(query, dim) as ArrayLike<number>)
  prepareRow(out, 0, dim, metric, 'query', 0)
  return out
}

/** A query vector's type and dimension. */
function checkQueryShape(query: VectorInput, dim: number): VectorInput {
  if (query === null || typeof query !== 'object' || typeof query.length !== 'number') {
    throw new InvalidOptionError('query', typeof query, 'must be a Float32Array or number[]')
  }
  if (query.length !== dim) throw new DimensionMismatchError('query', dim, query.length)
  return query
}

/** One query vector as given (not rounded to float32), checked: its dimension, every component finite. */
export function checkQuery(query: VectorInput, dim: number): Float64Array {
  const out = Float64Array.from(checkQueryShape(query, dim))
  for (let j = 0; j < dim; j++) {
    const v = out[j]!
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new NonFiniteValueError('query', 0, j, v)
  }
  return out
}
