/**
 * Errors of `@dreamdb/arrow`, each with a stable `code` and the values involved. Errors of
 * `@dreamdb/cas` (I/O, integrity) pass through unchanged.
 */

export abstract class ArrowLayerError extends Error {
  abstract readonly code: string
}

/** A value does not fit its field (wrong type, wrong dimension, NaN). Nothing was written. */
export class InvalidValueError extends ArrowLayerError {
  static readonly code = 'ERR_ARROW_INVALID_VALUE'
  override readonly name = 'InvalidValueError'
  readonly code = InvalidValueError.code
  /** The offending value (or component), when one value is to blame. */
  readonly value: unknown
  constructor(
    readonly field: string,
    readonly index: number,
    readonly reason: string,
    options?: ErrorOptions & { value?: unknown },
  ) {
    super(`Invalid value for field '${field}' at record ${index}: ${reason}`, options)
    this.value = options?.value
  }
}

/**
 * A field definition this package cannot encode (an unknown family or scalar kind), as
 * when a layer is written with a kind that does not exist. Nothing was written.
 */
export class InvalidFieldError extends ArrowLayerError {
  static readonly code = 'ERR_ARROW_INVALID_FIELD'
  override readonly name = 'InvalidFieldError'
  readonly code = InvalidFieldError.code
  constructor(
    readonly field: string,
    readonly what: 'family' | 'kind',
    readonly value: unknown,
    readonly allowed: readonly string[],
  ) {
    super(
      `Field '${field}' has ${what} ${JSON.stringify(value) ?? String(value)}, which is not one of ${allowed.join(', ')}`,
    )
  }
}

/** A stored object does not hold what its field says (wrong type, wrong length). */
export class CorruptFieldObjectError extends ArrowLayerError {
  static readonly code = 'ERR_ARROW_CORRUPT'
  override readonly name = 'CorruptFieldObjectError'
  readonly code = CorruptFieldObjectError.code
  constructor(
    readonly field: string,
    readonly cid: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`Object ${cid} of field '${field}' is corrupt: ${reason}`, options)
  }
}
