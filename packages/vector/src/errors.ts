/**
 * Every error `@dreamdb/vector` throws on purpose. Each carries a stable `code`, the values
 * involved as readonly fields, and the underlying `cause` where there is one. Errors of
 * `@dreamdb/cas` (a missing object, I/O, integrity) pass through unchanged. Match on
 * `code` (or `name`), not `instanceof`: two copies of this package may be installed.
 *
 * Aborts are not wrapped: an aborted call rejects with the signal's reason.
 */

/** The base class: a stable machine-readable `code` next to a message meant for people. */
export abstract class VectorError extends Error {
  abstract readonly code: string
}

/** A vector, query, centroid set or code block has another dimension than expected. */
export class DimensionMismatchError extends VectorError {
  static readonly code = 'ERR_VECTOR_DIMENSION_MISMATCH'
  override readonly name = 'DimensionMismatchError'
  readonly code = DimensionMismatchError.code
  constructor(
    readonly what: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`${what} has dimension ${actual}, expected ${expected}`)
  }
}

/** A component is NaN or infinite. Nothing was trained, encoded or searched. */
export class NonFiniteValueError extends VectorError {
  static readonly code = 'ERR_VECTOR_NOT_FINITE'
  override readonly name = 'NonFiniteValueError'
  readonly code = NonFiniteValueError.code
  constructor(
    readonly what: string,
    readonly vector: number,
    readonly component: number,
    readonly value: number,
  ) {
    super(`${what} ${vector} has a non-finite component ${component} (${value}); remove or repair it`)
  }
}

/** A zero vector under the cosine metric, whose direction (and so distance) is undefined. */
export class ZeroVectorError extends VectorError {
  static readonly code = 'ERR_VECTOR_ZERO_VECTOR'
  override readonly name = 'ZeroVectorError'
  readonly code = ZeroVectorError.code
  constructor(
    readonly what: string,
    readonly vector: number,
  ) {
    super(
      `${what} ${vector} is all zeros, which has no cosine distance to anything; drop it or use metric 'l2'`,
    )
  }
}

/** An option is out of range or of the wrong type (k, nprobe, bits, lists, dim, ...). */
export class InvalidOptionError extends VectorError {
  static readonly code = 'ERR_VECTOR_INVALID_OPTION'
  override readonly name = 'InvalidOptionError'
  readonly code = InvalidOptionError.code
  constructor(
    readonly option: string,
    readonly value: unknown,
    readonly reason: string,
  ) {
    super(`Invalid ${option} ${formatValue(value)}: ${reason}`)
  }
}

/** Training was asked for more lists than there are vectors to train on. */
export class NotEnoughVectorsError extends VectorError {
  static readonly code = 'ERR_VECTOR_NOT_ENOUGH_VECTORS'
  override readonly name = 'NotEnoughVectorsError'
  readonly code = NotEnoughVectorsError.code
  constructor(
    readonly count: number,
    readonly needed: number,
    readonly reason: string,
  ) {
    super(`Got ${count} vectors, need at least ${needed}: ${reason}`)
  }
}

/** The CID names an object of another kind (a compressor where a spatial index was expected, raw bytes, ...). */
export class WrongObjectKindError extends VectorError {
  static readonly code = 'ERR_VECTOR_WRONG_KIND'
  override readonly name = 'WrongObjectKindError'
  readonly code = WrongObjectKindError.code
  constructor(
    readonly cid: string,
    readonly expected: string,
    readonly actual: string,
    options?: ErrorOptions,
  ) {
    super(`Object ${cid} is ${actual}, not ${expected}`, options)
  }
}

/** The bytes claim to be a spatial index, compressor or code block but break its format. */
export class CorruptObjectError extends VectorError {
  static readonly code = 'ERR_VECTOR_CORRUPT'
  override readonly name = 'CorruptObjectError'
  readonly code = CorruptObjectError.code
  constructor(
    readonly what: string,
    readonly where: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`${what} ${where} is corrupt: ${reason}`, options)
  }
}

/** An object or code block written by a newer format version. */
export class UnsupportedVersionError extends VectorError {
  static readonly code = 'ERR_VECTOR_UNSUPPORTED_VERSION'
  override readonly name = 'UnsupportedVersionError'
  readonly code = UnsupportedVersionError.code
  constructor(
    readonly what: string,
    readonly version: number,
    readonly supported: number,
  ) {
    super(
      `${what} has format version ${version}; this @dreamdb/vector reads version ${supported}, upgrade it`,
    )
  }
}

/**
 * Two parts that must belong together do not: a spatial index and a compressor of different
 * dimension or metric, or a code block encoded against another spatial index or compressor.
 */
export class IncompatibleError extends VectorError {
  static readonly code = 'ERR_VECTOR_INCOMPATIBLE'
  override readonly name = 'IncompatibleError'
  readonly code = IncompatibleError.code
  constructor(
    readonly what: string,
    readonly expected: string,
    readonly actual: string,
  ) {
    super(`${what}: expected ${expected}, got ${actual}`)
  }
}

/** `rerank: true` on an index that keeps no full-precision vectors. */
export class RerankUnavailableError extends VectorError {
  static readonly code = 'ERR_VECTOR_NO_RERANK_VECTORS'
  override readonly name = 'RerankUnavailableError'
  readonly code = RerankUnavailableError.code
  constructor(readonly missing: number) {
    super(
      `Cannot rerank: ${missing} indexed vectors were added without their full-precision values; add them with vectors, or search with { rerank: false }`,
    )
  }
}

/** `kernels: 'wasm'` where this runtime has no WebAssembly SIMD. */
export class WasmUnavailableError extends VectorError {
  static readonly code = 'ERR_VECTOR_WASM_UNAVAILABLE'
  override readonly name = 'WasmUnavailableError'
  readonly code = WasmUnavailableError.code
  constructor(options?: ErrorOptions) {
    const cause = options?.cause
    const detail = cause instanceof Error ? `: ${cause.message}` : ''
    super(
      `WebAssembly SIMD kernels are unavailable in this runtime${detail}; use kernels: 'auto' or 'js'`,
      options,
    )
  }
}

function formatValue(value: unknown): string {
  if (typeof value === 'string') return `'${value}'`
  if (typeof value === 'bigint') return `${value}n`
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
