/**
 * The bridge's own errors. Errors of the packages it calls pass through with their codes;
 * these are the requests it cannot make sense of.
 */

/** A request naming an unknown operation, a dataset handle that is not open, or a bad argument. */
export class BadRequestError extends Error {
  readonly code = 'ERR_BRIDGE_BAD_REQUEST'
  override readonly name = 'BadRequestError'
  constructor(
    readonly op: string,
    readonly reason: string,
  ) {
    super(`Bridge request '${op}': ${reason}`)
  }
}
