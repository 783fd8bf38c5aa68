/**
 * Every error `@dreamdb/manifest` throws on purpose, each with a stable `code`, the values
 * involved as fields, and the `cause` where there is one. Errors of `@dreamdb/cas` (I/O,
 * integrity) pass through unchanged. Match on `code`, not `instanceof`.
 */

export abstract class ManifestError extends Error {
  abstract readonly code: string
}

/** A ref name breaks the naming rules; nothing was written. */
export class InvalidRefNameError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_INVALID_REF_NAME'
  override readonly name = 'InvalidRefNameError'
  readonly code = InvalidRefNameError.code
  constructor(
    readonly refName: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`Invalid ref name '${refName}': ${reason}`, options)
  }
}

/** No ref with this name exists. */
export class RefNotFoundError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_REF_NOT_FOUND'
  override readonly name = 'RefNotFoundError'
  readonly code = RefNotFoundError.code
  constructor(
    readonly refName: string,
    readonly store: string,
  ) {
    super(`No dataset, branch or snapshot named '${refName}' in ${store}`)
  }
}

/** A branch or dataset with this name already exists. */
export class RefExistsError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_REF_EXISTS'
  override readonly name = 'RefExistsError'
  readonly code = RefExistsError.code
  constructor(
    readonly refName: string,
    readonly kind: string,
    readonly manifest: string,
  ) {
    super(`A ${kind} named '${refName}' already exists (at manifest ${manifest}); pick another name`)
  }
}

/** A snapshot label already names a different state. */
export class SnapshotLabelTakenError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_LABEL_TAKEN'
  override readonly name = 'SnapshotLabelTakenError'
  readonly code = SnapshotLabelTakenError.code
  constructor(
    readonly label: string,
    readonly existingManifest: string,
    readonly requestedManifest: string,
  ) {
    super(
      `Snapshot label '${label}' already names manifest ${existingManifest}, not ${requestedManifest}; snapshots never move, so choose a new label`,
    )
  }
}

/** A write was aimed at a snapshot, which never moves. */
export class SnapshotImmutableError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_SNAPSHOT_IMMUTABLE'
  override readonly name = 'SnapshotImmutableError'
  readonly code = SnapshotImmutableError.code
  constructor(
    readonly refName: string,
    readonly operation: string,
  ) {
    super(
      `Cannot ${operation} '${refName}': it is a snapshot, and snapshots never move; branch from it instead`,
    )
  }
}

/**
 * A concurrent commit made a change that does not commute with this one (for example a
 * schema change while this commit appended). Names the manifest this commit was based on
 * and the head it would have had to rebase onto.
 */
export class CommitConflictError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_CONFLICT'
  override readonly name = 'CommitConflictError'
  readonly code = CommitConflictError.code
  constructor(
    readonly refName: string,
    readonly baseManifest: string,
    readonly headManifest: string,
    readonly reason: string,
  ) {
    super(
      `Commit to '${refName}' conflicts with a concurrent commit: based on ${baseManifest}, but head is now ${headManifest}: ${reason}`,
    )
  }
}

/** Every attempt to move the ref lost a race; nothing was committed. */
export class RetriesExhaustedError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_RETRIES_EXHAUSTED'
  override readonly name = 'RetriesExhaustedError'
  readonly code = RetriesExhaustedError.code
  constructor(
    readonly refName: string,
    readonly attempts: number,
    options?: ErrorOptions,
  ) {
    super(`Commit to '${refName}' lost the race ${attempts} times in a row; nothing was committed`, options)
  }
}

/** An object was written by a newer DreamDB (or is not a DreamDB object of this kind). */
export class UnsupportedVersionError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_UNSUPPORTED_VERSION'
  override readonly name = 'UnsupportedVersionError'
  readonly code = UnsupportedVersionError.code
  constructor(
    readonly what: string,
    readonly cid: string,
    readonly version: unknown,
  ) {
    super(
      `${what} ${cid} has format version ${JSON.stringify(version)}, which this DreamDB does not know; upgrade @dreamdb/manifest`,
    )
  }
}

/** An object decoded but is not a valid, canonical DreamDB object of the expected kind. */
export class CorruptObjectError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_CORRUPT'
  override readonly name = 'CorruptObjectError'
  readonly code = CorruptObjectError.code
  constructor(
    readonly what: string,
    readonly cid: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(`${what} ${cid} is corrupt: ${reason}`, options)
  }
}

/** A schema, field or layer definition is invalid; nothing was written. */
export class InvalidSchemaError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_INVALID_SCHEMA'
  override readonly name = 'InvalidSchemaError'
  readonly code = InvalidSchemaError.code
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`Invalid schema at ${path}: ${reason}`)
  }
}

/** A change (buckets, layer segments, compaction) does not fit the dataset; nothing was written. */
export class InvalidChangeError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_INVALID_CHANGE'
  override readonly name = 'InvalidChangeError'
  readonly code = InvalidChangeError.code
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`Invalid change at ${path}: ${reason}`)
  }
}

/**
 * A commit's `meta` is not a small map of plain values (strings, safe integers, booleans,
 * null, lists, maps) or is too large; nothing was written. `key` names the offending entry
 * (`meta.progress.offset`, `meta.files[2]`, or `meta` for the whole map).
 */
export class InvalidMetaError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_INVALID_META'
  override readonly name = 'InvalidMetaError'
  readonly code = InvalidMetaError.code
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`Invalid commit metadata at ${key}: ${reason}`)
  }
}

/** A change refers to a data object that is not in the store; nothing was committed. */
export class MissingObjectError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_MISSING_OBJECT'
  override readonly name = 'MissingObjectError'
  readonly code = MissingObjectError.code
  constructor(
    readonly cid: string,
    readonly path: string,
    readonly store: string,
  ) {
    super(`${path} refers to object ${cid}, which is not in ${store}; write data objects before committing`)
  }
}

/**
 * A commit wrote its manifest but could not learn whether the branch moved to it: the ref
 * write's answer was lost (timeout, reset connection) and reading the branch back failed
 * too, or the branch moved by more commits than a commit looks back through. The change may
 * or may not be on the branch: `dreamdb log` of the branch shows whether `manifest` is in it.
 */
export class CommitOutcomeUnknownError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_COMMIT_UNKNOWN'
  override readonly name = 'CommitOutcomeUnknownError'
  readonly code = CommitOutcomeUnknownError.code
  constructor(
    readonly refName: string,
    /** The manifest this commit tried to move the branch to last. */
    readonly manifest: string,
    readonly reason: string,
    options?: ErrorOptions,
  ) {
    super(
      `Commit to '${refName}' may or may not have landed (manifest ${manifest}): ${reason}; check with: dreamdb log --ref-name ${refName}`,
      options,
    )
  }
}

/**
 * A walk of the timeline, a layer's segments or the history met objects that disagree:
 * a node reached twice, a summary that does not match the node it summarises, a level out
 * of order or beyond the nesting limit, a manifest whose counts differ from its timeline.
 * The store is damaged or was written by something other than DreamDB. Names the object
 * (`cid`), what disagreed (`reason`), and the two values where there are two.
 */
export class IntegrityError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_INTEGRITY'
  override readonly name = 'IntegrityError'
  readonly code = IntegrityError.code
  constructor(
    readonly what: string,
    readonly cid: string,
    readonly reason: string,
    readonly expected?: string | number,
    readonly actual?: string | number,
  ) {
    super(
      `${what} ${cid} is inconsistent: ${reason}${expected === undefined ? '' : ` (expected ${expected}, found ${actual})`}; the store is damaged`,
    )
  }
}

/**
 * A ref was not where the caller expected it: it moved (or was deleted, or re-created)
 * since the caller read it, so a delete by compare-and-swap did nothing. Names what was
 * expected and what is there now (`null`: gone).
 */
export class RefMovedError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_REF_MOVED'
  override readonly name = 'RefMovedError'
  readonly code = RefMovedError.code
  constructor(
    readonly refName: string,
    readonly expectedManifest: string,
    readonly actualManifest: string | null,
    options?: ErrorOptions,
  ) {
    super(
      `'${refName}' moved: expected it at manifest ${expectedManifest}, it is ${actualManifest === null ? 'gone' : `at ${actualManifest}`} now; nothing was deleted`,
      options,
    )
  }
}

/** A garbage-collection option is out of bounds (a grace period under the floor); nothing was read. */
export class InvalidGcOptionError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_INVALID_GC_OPTION'
  override readonly name = 'InvalidGcOptionError'
  readonly code = InvalidGcOptionError.code
  constructor(
    readonly option: string,
    readonly value: unknown,
    readonly reason: string,
  ) {
    super(`Invalid ${option} ${JSON.stringify(value)}: ${reason}`)
  }
}

/**
 * Garbage collection stopped before deleting anything: a ref could not be read, or an object
 * the refs reach (a manifest, a tree node) is missing or damaged, so the set of live objects
 * is not known. `dreamdb fsck` names the damage.
 */
export class GcRefusedError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_GC_REFUSED'
  override readonly name = 'GcRefusedError'
  readonly code = GcRefusedError.code
  constructor(
    readonly unreadableRefs: string[],
    readonly damagedObjects: string[],
  ) {
    const parts = [
      unreadableRefs.length > 0
        ? `${unreadableRefs.length} unreadable ref(s) (${unreadableRefs.slice(0, 3).join(', ')})`
        : '',
      damagedObjects.length > 0
        ? `${damagedObjects.length} missing or damaged object(s) reached from the refs (${damagedObjects.slice(0, 3).join(', ')})`
        : '',
    ].filter((p) => p !== '')
    super(
      `Garbage collection stopped before deleting anything: ${parts.join(' and ')}; the live set is not known`,
    )
  }
}

/**
 * Another garbage collection holds the sweep fence (design/0008) and is deleting now: a
 * second GC does not sweep beside it, and a commit that waited for it to end gave up. Nothing
 * was deleted or committed. A fence left by a GC that died goes stale and is taken over.
 */
export class GcBusyError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_GC_BUSY'
  override readonly name = 'GcBusyError'
  readonly code = GcBusyError.code
  constructor(
    /** The id of the GC holding the fence. */
    readonly gc: string,
    readonly store: string,
    reason: string,
  ) {
    super(`Garbage collection ${gc} is sweeping ${store}: ${reason}`)
  }
}

/**
 * A GC stopped its sweep part way because a writer needed the objects it was judging (the
 * writer asked through the sweep fence after waiting; design/0008). What it deleted was
 * unreachable and old; the rest is still there. Run it again.
 */
export class GcInterruptedError extends ManifestError {
  static readonly code = 'ERR_MANIFEST_GC_INTERRUPTED'
  override readonly name = 'GcInterruptedError'
  readonly code = GcInterruptedError.code
  constructor(
    readonly deleted: number,
    readonly doomed: number,
  ) {
    super(
      `Garbage collection stopped after deleting ${deleted} of ${doomed} unreachable objects: a writer asked the sweep to yield; run it again`,
    )
  }
}
