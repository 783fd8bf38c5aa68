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
  constructor(
    readonly field: string,
    readonly index: number,
    readonly reason: string,
  ) {
    super(`Invalid value for field '${field}' at record ${index}: ${reason}`)
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
