/**
 * Every error `@dreamdb/cas` throws on purpose. Each carries a stable `code`, the values
 * involved as readonly fields, and the underlying `cause` where there is one. Match on
 * `code` (or `name`), not `instanceof`: two copies of this package may be installed.
 *
 * Aborts are not wrapped: an aborted call rejects with the signal's reason (a
 * `DOMException` named `AbortError` unless the caller chose another reason).
 */

/** The base class: a stable machine-readable `code` next to a message meant for people. */
export abstract class CasError extends Error {
  abstract readonly code: string
}

/** The backend URL could not be understood; nothing was opened. */
export class InvalidBackendUrlError extends CasError {
  static readonly code = 'ERR_CAS_INVALID_URL'
  override readonly name = 'InvalidBackendUrlError'
  readonly code = InvalidBackendUrlError.code
  constructor(
    readonly url: string,
    readonly reason: string,
  ) {
    super(
      `Invalid backend URL '${url}': ${reason}. Use a folder path, file:///path, memory://, http(s)://host:port/bucket[/prefix] or s3://bucket[/prefix]`,
    )
  }
}

/** An `openStore` option or its environment variable has a value it cannot take. Nothing was opened. */
export class InvalidStoreOptionError extends CasError {
  static readonly code = 'ERR_CAS_INVALID_OPTION'
  override readonly name = 'InvalidStoreOptionError'
  readonly code = InvalidStoreOptionError.code
  constructor(
    readonly option: string,
    readonly value: unknown,
    readonly expected: string,
  ) {
    super(`Invalid store option ${option}=${String(value)}: expected ${expected}`)
  }
}

/**
 * An S3 or http(s) URL was opened where the AWS SDK is not installed. It is an optional peer
 * of this package, so that folder and memory users never download it; `missing` is the
 * package Node could not find, `packages` every one S3 needs. Nothing was opened.
 */
export class S3SupportMissingError extends CasError {
  static readonly code = 'ERR_CAS_S3_SDK_MISSING'
  override readonly name = 'S3SupportMissingError'
  readonly code = S3SupportMissingError.code
  constructor(
    readonly missing: string,
    readonly packages: readonly string[],
    options?: ErrorOptions,
  ) {
    super(
      `S3 backends need the package '${missing}', which is not installed; install them with: npm install ${packages.join(' ')}`,
      options,
    )
  }
}

/** A string that should have been a CID is not one, or names a hash this store cannot verify. */
export class InvalidCidError extends CasError {
  static readonly code = 'ERR_CAS_INVALID_CID'
  override readonly name = 'InvalidCidError'
  readonly code = InvalidCidError.code
  constructor(
    readonly value: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`Invalid CID '${value}': ${reason}`, options)
  }
}

/** A ref name breaks the naming rules (see `assertValidRefName`). Nothing was written. */
export class InvalidRefNameError extends CasError {
  static readonly code = 'ERR_CAS_INVALID_REF_NAME'
  override readonly name = 'InvalidRefNameError'
  readonly code = InvalidRefNameError.code
  constructor(
    readonly refName: string,
    readonly reason: string,
  ) {
    super(`Invalid ref name '${refName}': ${reason}`)
  }
}

/** A byte range asked for more than the object holds. */
export class InvalidRangeError extends CasError {
  static readonly code = 'ERR_CAS_INVALID_RANGE'
  override readonly name = 'InvalidRangeError'
  readonly code = InvalidRangeError.code
  constructor(
    readonly cid: string,
    readonly offset: number,
    readonly length: number,
    readonly size: number | undefined,
  ) {
    super(
      `Invalid range offset=${offset} length=${length} for object ${cid}${size === undefined ? '' : ` of ${size} bytes`}`,
    )
  }
}

/** The backend has no object with this CID (ENOENT on a folder, 404 on S3; nothing else). */
export class ObjectNotFoundError extends CasError {
  static readonly code = 'ERR_CAS_NOT_FOUND'
  override readonly name = 'ObjectNotFoundError'
  readonly code = ObjectNotFoundError.code
  constructor(
    readonly cid: string,
    readonly store: string,
    options?: ErrorOptions,
  ) {
    super(`Object ${cid} not found in ${store}`, options)
  }
}

/** The bytes read back do not hash to the CID they were stored under. */
export class ObjectIntegrityError extends CasError {
  static readonly code = 'ERR_CAS_INTEGRITY'
  override readonly name = 'ObjectIntegrityError'
  readonly code = ObjectIntegrityError.code
  constructor(
    readonly cid: string,
    readonly expectedDigest: string,
    readonly actualDigest: string,
    readonly store: string,
  ) {
    super(
      `Integrity check failed for ${cid} in ${store}: expected sha2-256 ${expectedDigest}, read bytes hashing to ${actualDigest}`,
    )
  }
}

/** The object is larger than this backend can publish in one piece. */
export class ObjectTooLargeError extends CasError {
  static readonly code = 'ERR_CAS_OBJECT_TOO_LARGE'
  override readonly name = 'ObjectTooLargeError'
  readonly code = ObjectTooLargeError.code
  constructor(
    readonly size: number,
    readonly limit: number,
    readonly store: string,
  ) {
    super(
      `Object of ${size} bytes exceeds the ${limit}-byte single-object limit of ${store}; split it into several objects`,
    )
  }
}

/** A ref asked for by name does not exist. */
export class RefNotFoundError extends CasError {
  static readonly code = 'ERR_CAS_REF_NOT_FOUND'
  override readonly name = 'RefNotFoundError'
  readonly code = RefNotFoundError.code
  constructor(
    readonly refName: string,
    readonly store: string,
    options?: ErrorOptions,
  ) {
    super(`Ref '${refName}' not found in ${store}`, options)
  }
}

/**
 * A compare-and-swap lost: the ref is not at the version the caller expected.
 * `expectedVersion` is `null` for create-if-absent; `actualVersion` is `null` when the
 * ref turned out to be missing.
 */
export class RefConflictError extends CasError {
  static readonly code = 'ERR_CAS_REF_CONFLICT'
  override readonly name = 'RefConflictError'
  readonly code = RefConflictError.code
  constructor(
    readonly refName: string,
    readonly expectedVersion: string | null,
    readonly actualVersion: string | null,
    readonly store: string,
  ) {
    super(
      expectedVersion === null
        ? `Ref '${refName}' already exists in ${store} (version ${actualVersion}); it was expected to be absent`
        : `Ref '${refName}' in ${store} moved: expected version ${expectedVersion}, found ${actualVersion ?? 'no ref'}`,
    )
  }
}

/** A ref object exists but its body is not a DreamDB ref envelope. */
export class RefCorruptError extends CasError {
  static readonly code = 'ERR_CAS_REF_CORRUPT'
  override readonly name = 'RefCorruptError'
  readonly code = RefCorruptError.code
  constructor(
    readonly refName: string,
    readonly reason: string,
    readonly store: string,
    options?: ErrorOptions,
  ) {
    super(`Ref '${refName}' in ${store} is corrupt: ${reason}`, options)
  }
}

/** A folder ref stayed locked by another writer for longer than the wait allows. */
export class RefLockedError extends CasError {
  static readonly code = 'ERR_CAS_REF_LOCKED'
  override readonly name = 'RefLockedError'
  readonly code = RefLockedError.code
  constructor(
    readonly refName: string,
    readonly lockPath: string,
    readonly waitedMs: number,
  ) {
    super(
      `Ref '${refName}' is still locked after ${waitedMs} ms by ${lockPath}; if no DreamDB writer is running, delete that file`,
    )
  }
}

/**
 * A decoded DAG-CBOR value does not have the shape its reader expects (see `shape`). The
 * layer that defines the object turns it into its own corrupt-object error, naming the
 * object; `reason` says what is wrong and where, e.g. `dim must be an integer from 1 to 16384`.
 */
export class ObjectShapeError extends CasError {
  static readonly code = 'ERR_CAS_OBJECT_SHAPE'
  override readonly name = 'ObjectShapeError'
  readonly code = ObjectShapeError.code
  constructor(readonly reason: string) {
    super(reason)
  }
}

/** The bucket named in an S3 URL does not exist on that server. */
export class BucketNotFoundError extends CasError {
  static readonly code = 'ERR_CAS_BUCKET_NOT_FOUND'
  override readonly name = 'BucketNotFoundError'
  readonly code = BucketNotFoundError.code
  constructor(
    readonly bucket: string,
    readonly endpoint: string,
    options?: ErrorOptions,
  ) {
    super(
      `Bucket '${bucket}' does not exist at ${endpoint}; create it first or open the store with { createBucket: true }`,
      options,
    )
  }
}

/** The server refused the credentials (wrong keys, or no permission on the bucket). */
export class AccessDeniedError extends CasError {
  static readonly code = 'ERR_CAS_ACCESS_DENIED'
  override readonly name = 'AccessDeniedError'
  readonly code = AccessDeniedError.code
  constructor(
    readonly bucket: string,
    readonly endpoint: string,
    options?: ErrorOptions,
  ) {
    super(
      `Access to bucket '${bucket}' at ${endpoint} was denied; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE and the bucket policy`,
      options,
    )
  }
}

/**
 * The server accepted a write it should have refused (`If-None-Match` or `If-Match`), so
 * refs could silently lose updates there. Raised before any data is written.
 */
export class ConditionalWritesUnsupportedError extends CasError {
  static readonly code = 'ERR_CAS_NO_CONDITIONAL_WRITES'
  override readonly name = 'ConditionalWritesUnsupportedError'
  readonly code = ConditionalWritesUnsupportedError.code
  constructor(
    readonly endpoint: string,
    readonly header: 'If-None-Match' | 'If-Match',
  ) {
    super(
      `The server at ${endpoint} ignored an ${header} conditional write, so refs cannot move safely; DreamDB needs AWS S3, MinIO >= RELEASE.2025-09-06 or SeaweedFS >= 4.17`,
    )
  }
}

/**
 * A request got no answer within its deadline (`timeoutMs` of silence: no response, no body
 * byte), on every attempt the operation allows. `endpoint` is the server that did not answer.
 */
export class StoreTimeoutError extends CasError {
  static readonly code = 'ERR_CAS_TIMEOUT'
  override readonly name = 'StoreTimeoutError'
  readonly code = StoreTimeoutError.code
  constructor(
    readonly operation: string,
    readonly target: string,
    readonly endpoint: string,
    readonly timeoutMs: number,
    readonly attempts: number,
    options?: ErrorOptions,
  ) {
    super(
      `${operation} ${target}: ${endpoint} did not answer within ${timeoutMs} ms (${attempts} attempt${attempts === 1 ? '' : 's'})`,
      options,
    )
  }
}

/**
 * The server could not be reached or could not serve (connection refused, a name that does
 * not resolve, a reset connection, 502/503/504 such as a MinIO below its quorum), on every
 * attempt the operation allows. `reason` is the last failure (`ECONNREFUSED`, `ENOTFOUND`,
 * `HTTP 503 SlowDown`, ...). `requestSent` is `false` when no attempt reached the server;
 * `mayHaveLanded` is `false` when no attempt can have been applied (none reached the server,
 * or it refused them with 503): either way a write is known not to have happened.
 */
export class StoreUnreachableError extends CasError {
  static readonly code = 'ERR_CAS_UNREACHABLE'
  override readonly name = 'StoreUnreachableError'
  readonly code = StoreUnreachableError.code
  constructor(
    readonly operation: string,
    readonly target: string,
    readonly endpoint: string,
    readonly reason: string,
    readonly attempts: number,
    readonly requestSent: boolean,
    readonly mayHaveLanded: boolean,
    options?: ErrorOptions,
  ) {
    super(
      `${operation} ${target}: ${endpoint} is unreachable (${reason}; ${attempts} attempt${attempts === 1 ? '' : 's'})`,
      options,
    )
  }
}

/**
 * A compare-and-swap write of a ref was sent but no answer came back (timeout, reset
 * connection, a 5xx), and reading the ref afterwards did not show it: it may have been
 * applied, may be applied later, or never. The ref is not retried blindly; the caller must
 * find out (e.g. is its own value the head, or an ancestor of it?) before writing again.
 * `expectedVersion` is `null` for create-if-absent; `cause` is the write's failure.
 */
export class WriteOutcomeUnknownError extends CasError {
  static readonly code = 'ERR_CAS_OUTCOME_UNKNOWN'
  override readonly name = 'WriteOutcomeUnknownError'
  readonly code = WriteOutcomeUnknownError.code
  constructor(
    readonly refName: string,
    readonly expectedVersion: string | null,
    readonly store: string,
    options?: ErrorOptions,
  ) {
    const cause = options?.cause
    const detail = cause instanceof Error ? `: ${cause.message}` : ''
    super(
      `The write of ref '${refName}' in ${store} may or may not have landed (no answer${detail}); read the ref to find out before writing again`,
      options,
    )
  }
}

/** Any other backend failure (I/O error, 5xx after retries, ...). The cause is kept. */
export class StorageError extends CasError {
  static readonly code = 'ERR_CAS_STORAGE'
  override readonly name = 'StorageError'
  readonly code = StorageError.code
  constructor(
    readonly operation: string,
    readonly target: string,
    readonly store: string,
    options?: ErrorOptions,
  ) {
    const cause = options?.cause
    const detail = cause instanceof Error ? `: ${cause.message}` : ''
    super(`${operation} ${target} failed in ${store}${detail}`, options)
  }
}
