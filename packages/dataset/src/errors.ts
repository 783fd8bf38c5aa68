/**
 * Errors of `@dreamdb/dataset`, each with a stable `code` and the values involved. Errors
 * of the layers below (`ERR_CAS_…`, `ERR_MANIFEST_…`, `ERR_ARROW_…`) pass through.
 */

export abstract class DatasetError extends Error {
  abstract readonly code: string
}

/** A field name that the dataset (or the ref) does not have. */
export class UnknownFieldError extends DatasetError {
  static readonly code = 'ERR_DATASET_UNKNOWN_FIELD'
  override readonly name = 'UnknownFieldError'
  readonly code = UnknownFieldError.code
  constructor(
    readonly field: string,
    readonly known: string[],
  ) {
    super(`Unknown field '${field}'; this dataset has ${known.map((k) => `'${k}'`).join(', ')}`)
  }
}

/** An option of iteration or of a write is out of range. Nothing was read or written. */
export class InvalidOptionError extends DatasetError {
  static readonly code = 'ERR_DATASET_INVALID_OPTION'
  override readonly name = 'InvalidOptionError'
  readonly code = InvalidOptionError.code
  constructor(
    readonly option: string,
    readonly value: unknown,
    readonly reason: string,
  ) {
    super(
      `Invalid ${option} ${JSON.stringify(typeof value === 'bigint' ? value.toString() : value)}: ${reason}`,
    )
  }
}

/** A layer sample names an anchor twice, or an anchor the dataset does not have. */
export class InvalidSampleError extends DatasetError {
  static readonly code = 'ERR_DATASET_INVALID_SAMPLE'
  override readonly name = 'InvalidSampleError'
  readonly code = InvalidSampleError.code
  constructor(
    readonly layer: string,
    readonly index: number,
    readonly reason: string,
  ) {
    super(`Invalid sample ${index} of layer '${layer}': ${reason}`)
  }
}

/** A resume state was taken from another state of the data or another iteration. */
export class ResumeMismatchError extends DatasetError {
  static readonly code = 'ERR_DATASET_RESUME_MISMATCH'
  override readonly name = 'ResumeMismatchError'
  readonly code = ResumeMismatchError.code
  constructor(
    readonly key: string,
    readonly expected: unknown,
    readonly actual: unknown,
  ) {
    super(
      `The resume state does not belong to this iteration: its ${key} is ${JSON.stringify(actual)}, this iteration's is ${JSON.stringify(expected)}`,
    )
  }
}

/** A write was attempted on a dataset opened at a snapshot or manifest. */
export class ReadOnlyDatasetError extends DatasetError {
  static readonly code = 'ERR_DATASET_READ_ONLY'
  override readonly name = 'ReadOnlyDatasetError'
  readonly code = ReadOnlyDatasetError.code
  constructor(readonly at: string) {
    super(`This dataset is opened at ${at}, which never moves; open a branch (or ds.branch(name)) to write`)
  }
}

/**
 * A merge that cannot be made as asked: the two states have no common history, the branch
 * merged in did more than append and write layers since the merge base, or both branches
 * changed the same layer (or a field the merged records hold) since then. Nothing was written.
 */
export class MergeConflictError extends DatasetError {
  static readonly code = 'ERR_DATASET_MERGE_CONFLICT'
  override readonly name = 'MergeConflictError'
  readonly code = MergeConflictError.code
  constructor(
    readonly into: string,
    readonly from: string,
    readonly reason: string,
  ) {
    super(`Cannot merge ${from} into ${into}: ${reason}`)
  }
}

/**
 * `migrate` or `compact` needs an object of a bucket that is not in the store: the store is
 * damaged (an object deleted by hand, a lost disk). The verb refused before writing anything.
 * `dreamdb fsck` lists every missing object and the refs that reach it.
 */
export class MissingBucketObjectError extends DatasetError {
  static readonly code = 'ERR_DATASET_MISSING_OBJECT'
  override readonly name = 'MissingBucketObjectError'
  readonly code = MissingBucketObjectError.code
  constructor(
    readonly verb: 'migrate' | 'compact',
    readonly cid: string,
    /** The bucket's position in the timeline. */
    readonly bucket: number,
    /** Which of the bucket's objects (`<field>` or `<field>/<part>`). */
    readonly object: string,
    readonly store: string,
    options?: ErrorOptions,
  ) {
    super(
      `${verb} refused: object ${cid} (bucket ${bucket}, '${object}') is missing from ${store}; nothing was written. Run \`dreamdb fsck\` to list the damage`,
      options,
    )
  }
}
