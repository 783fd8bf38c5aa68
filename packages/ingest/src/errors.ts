/**
 * Errors of `@dreamdb/ingest`, each with a stable `code` (`ERR_INGEST_…`), the values
 * involved as fields, a `hint` saying what to do, and its `cause`. Errors of the layers
 * below (`ERR_CAS_…`, `ERR_MANIFEST_…`, `ERR_DATASET_…`) pass through. Callers match on
 * `code`, never `instanceof`.
 */

export abstract class IngestError extends Error {
  abstract readonly code: string
  /** What to do about it, for people (the CLI prints it as `(hint: …)`). */
  readonly hint: string | undefined
  constructor(message: string, hint?: string, options?: ErrorOptions) {
    super(message, options)
    this.hint = hint
  }
}

/** An option is out of range or contradicts another one (or the model). Nothing was read or written. */
export class InvalidIngestOptionError extends IngestError {
  static readonly code = 'ERR_INGEST_INVALID_OPTION'
  override readonly name = 'InvalidIngestOptionError'
  readonly code = InvalidIngestOptionError.code
}

/** A file or folder ingest was pointed at (the shards' root, a model) does not exist. */
export class IngestFileNotFoundError extends IngestError {
  static readonly code = 'ERR_INGEST_FILE_NOT_FOUND'
  override readonly name = 'IngestFileNotFoundError'
  readonly code = IngestFileNotFoundError.code
  constructor(
    readonly path: string,
    what: string,
  ) {
    super(`${what} ${path} does not exist`)
  }
}

/** A split has no parquet shards under the root, or some of its numbered shards are missing. */
export class NoShardsError extends IngestError {
  static readonly code = 'ERR_INGEST_NO_SHARDS'
  override readonly name = 'NoShardsError'
  readonly code = NoShardsError.code
}

/** A parquet shard is malformed, lacks an expected column, or holds a value of the wrong type. */
export class ShardError extends IngestError {
  static readonly code = 'ERR_INGEST_BAD_SHARD'
  override readonly name = 'ShardError'
  readonly code = ShardError.code
  constructor(
    readonly file: string,
    message: string,
    hint?: string,
    options?: ErrorOptions,
  ) {
    super(`${file}: ${message}`, hint, options)
  }
}

/** The embedding column has the wrong type, a null, a non-finite value or another dimension. */
export class EmbeddingColumnError extends IngestError {
  static readonly code = 'ERR_INGEST_BAD_EMBEDDING'
  override readonly name = 'EmbeddingColumnError'
  readonly code = EmbeddingColumnError.code
  constructor(
    readonly file: string,
    message: string,
    hint?: string,
  ) {
    super(`${file}: ${message}`, hint)
  }
}

/** The embedding model cannot be loaded or run, or its output is not a vector per image. */
export class ModelError extends IngestError {
  static readonly code = 'ERR_INGEST_BAD_MODEL'
  override readonly name = 'ModelError'
  readonly code = ModelError.code
}

/** An image in a shard cannot be decoded (computing embeddings with a model). */
export class ImageError extends IngestError {
  static readonly code = 'ERR_INGEST_BAD_IMAGE'
  override readonly name = 'ImageError'
  readonly code = ImageError.code
}

/** Ingest into a dataset that exists with other fields than the ones it writes. */
export class SchemaMismatchError extends IngestError {
  static readonly code = 'ERR_INGEST_SCHEMA_MISMATCH'
  override readonly name = 'SchemaMismatchError'
  readonly code = SchemaMismatchError.code
}

/** A shard was partly ingested before, and the file under that name has changed since. */
export class ShardChangedError extends IngestError {
  static readonly code = 'ERR_INGEST_SHARD_CHANGED'
  override readonly name = 'ShardChangedError'
  readonly code = ShardChangedError.code
}

/**
 * Another ingest holds the dataset's ingest lease (design/0006): it is running, or it
 * stopped less than a lease's lifetime ago on another host. `holder` says who.
 */
export class IngestLockedError extends IngestError {
  static readonly code = 'ERR_INGEST_LOCKED'
  override readonly name = 'IngestLockedError'
  readonly code = IngestLockedError.code
  constructor(
    readonly dataset: string,
    readonly holder: { host: string; pid: number; acquired: number; expires: number; command: string },
    hint?: string,
  ) {
    super(
      `Another ingest into '${dataset}' is running: pid ${holder.pid} on ${holder.host}, since ${new Date(holder.acquired).toISOString()}${holder.command ? ` (${holder.command})` : ''}`,
      hint,
    )
  }
}

/** This ingest's lease was taken over (it stopped renewing it in time): it stops before the next commit. */
export class IngestLeaseLostError extends IngestError {
  static readonly code = 'ERR_INGEST_LEASE_LOST'
  override readonly name = 'IngestLeaseLostError'
  readonly code = IngestLeaseLostError.code
}

/** A commit of the dataset's history says it is an ingest chunk, but its metadata is malformed. */
export class IngestHistoryError extends IngestError {
  static readonly code = 'ERR_INGEST_BAD_HISTORY'
  override readonly name = 'IngestHistoryError'
  readonly code = IngestHistoryError.code
}
