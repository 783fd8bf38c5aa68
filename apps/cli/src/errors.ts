/**
 * The CLI's own errors and the one mapping from any error to an exit code and a hint.
 * Commands throw; only `index.ts` turns an error into a line on stderr and an exit code.
 * Errors of the packages are matched by their stable `code`, never by `instanceof`.
 */

/** Exit codes, documented in the README and in `dreamdb --help`. */
export const EXIT = {
  ok: 0,
  /** A typed DreamDB error: bad input, a damaged store, a read-only target. */
  user: 1,
  /** The command line itself is wrong: unknown verb or option, missing or contradictory flags. */
  usage: 2,
  /** A ref, field, file or backend that the command names does not exist. */
  notFound: 3,
  /** The name is taken, another writer moved the branch first, or another ingest holds the dataset. */
  conflict: 4,
  /**
   * The store did not answer in time or could not be reached (EX_TEMPFAIL): running the
   * command again later may succeed. A write whose outcome is unknown is here too.
   */
  unavailable: 75,
  /** A bug: an error without a DreamDB code. */
  internal: 70,
  /** Interrupted (Ctrl-C, SIGINT): 128 + 2, as a shell reports a process killed by it. */
  interrupted: 130,
  /** Terminated (SIGTERM, e.g. `kill` or a CI runner's timeout): 128 + 15. */
  terminated: 143,
} as const

/** The signals the program stops on, and the exit code of each (128 + the signal's number). */
export const SIGNAL_EXIT = { SIGINT: EXIT.interrupted, SIGTERM: EXIT.terminated } as const
export type StopSignal = keyof typeof SIGNAL_EXIT

/**
 * The abort reason when the process receives SIGINT or SIGTERM. Named `AbortError` like the
 * default reason, so that every layer that recognises an abort (and releases what it holds,
 * e.g. ingest's lease) treats it as one; `signalName` picks the exit code.
 */
export class InterruptedError extends Error {
  static readonly code = 'ERR_CLI_INTERRUPTED'
  override readonly name = 'AbortError'
  readonly code = InterruptedError.code
  constructor(readonly signalName: StopSignal) {
    super(signalName === 'SIGINT' ? 'interrupted' : `terminated (${signalName})`)
  }
}

export abstract class CliError extends Error {
  abstract readonly code: string
  /** Shown after the message as `(hint: …)`. */
  readonly hint: string | undefined
  constructor(message: string, hint?: string, options?: ErrorOptions) {
    super(message, options)
    this.hint = hint
  }
}

/** The command line is malformed: a flag value, a missing flag, two flags that contradict. */
export class UsageError extends CliError {
  static readonly code = 'ERR_CLI_USAGE'
  override readonly name = 'UsageError'
  readonly code = UsageError.code
}

/** A file named on the command line (a schema) does not exist or cannot be read. */
export class FileNotFoundError extends CliError {
  static readonly code = 'ERR_CLI_FILE_NOT_FOUND'
  override readonly name = 'FileNotFoundError'
  readonly code = FileNotFoundError.code
  constructor(
    readonly path: string,
    what: string,
  ) {
    super(`${what} ${path} does not exist`)
  }
}

/** A folder backend that a read-only verb was pointed at does not exist (nothing is created). */
export class BackendNotFoundError extends CliError {
  static readonly code = 'ERR_CLI_BACKEND_NOT_FOUND'
  override readonly name = 'BackendNotFoundError'
  readonly code = BackendNotFoundError.code
  constructor(readonly path: string) {
    super(
      `No DreamDB store at ${path}`,
      'create one with dreamdb init <name> --schema ..., or point --backend or DREAMDB_BACKEND at an existing store',
    )
  }
}

/** The project's `.dreamdb.json` cannot be read or is not what it should be. */
export class ConfigError extends CliError {
  static readonly code = 'ERR_CLI_BAD_CONFIG'
  override readonly name = 'ConfigError'
  readonly code = ConfigError.code
  constructor(
    readonly path: string,
    problem: string,
    options?: ErrorOptions,
  ) {
    super(`${path} ${problem}`, 'fix or delete the file; --backend or DREAMDB_BACKEND override it', options)
  }
}

/** A verb was given a field of the wrong family (`search --field label`: not an embedding). */
export class FieldKindError extends CliError {
  static readonly code = 'ERR_CLI_WRONG_FIELD_KIND'
  override readonly name = 'FieldKindError'
  readonly code = FieldKindError.code
}

/**
 * `inspect --verify` found missing or corrupt objects. Its report (text or JSON) is already on
 * stdout, naming every one; this is the line on stderr and the exit code (1: a damaged store).
 */
export class DamagedStateError extends CliError {
  static readonly code = 'ERR_CLI_DAMAGED'
  override readonly name = 'DamagedStateError'
  readonly code = DamagedStateError.code
  /** The report is printed: the boundary adds no JSON error document under --json. */
  readonly reported = true
}

/** An output file exists and `--force` was not given. */
export class OutputExistsError extends CliError {
  static readonly code = 'ERR_CLI_OUTPUT_EXISTS'
  override readonly name = 'OutputExistsError'
  readonly code = OutputExistsError.code
  constructor(readonly path: string) {
    super(`${path} already exists`, 'pass --force to replace it, or choose another --out')
  }
}

/** `search --like-anchor N` names a record the ref does not have. */
export class AnchorNotFoundError extends CliError {
  static readonly code = 'ERR_CLI_ANCHOR_NOT_FOUND'
  override readonly name = 'AnchorNotFoundError'
  readonly code = AnchorNotFoundError.code
}

/**
 * Exit with a code and print nothing more: help and version (at once), or a verb that has
 * printed its answer and reports it in its exit code (`diff --exit-code`, `inspect --verify`
 * finding damage): `settled`, after stdout drains.
 */
export class ExitError extends Error {
  override readonly name = 'ExitError'
  constructor(
    readonly exitCode: number,
    readonly settled = false,
  ) {
    super(`exit ${exitCode}`)
  }
}

const NOT_FOUND = new Set([
  'ERR_MANIFEST_REF_NOT_FOUND',
  'ERR_CAS_REF_NOT_FOUND',
  'ERR_CAS_BUCKET_NOT_FOUND',
  'ERR_DATASET_UNKNOWN_FIELD',
  FileNotFoundError.code,
  BackendNotFoundError.code,
  AnchorNotFoundError.code,
  'ERR_INGEST_FILE_NOT_FOUND',
  'ERR_INGEST_NO_SHARDS',
])

const CONFLICT = new Set([
  'ERR_DATASET_MERGE_CONFLICT',
  'ERR_MANIFEST_REF_EXISTS',
  'ERR_MANIFEST_LABEL_TAKEN',
  'ERR_MANIFEST_CONFLICT',
  'ERR_MANIFEST_RETRIES_EXHAUSTED',
  'ERR_MANIFEST_REF_MOVED',
  'ERR_CAS_REF_CONFLICT',
  'ERR_CAS_REF_LOCKED',
  OutputExistsError.code,
  'ERR_INGEST_SCHEMA_MISMATCH',
  'ERR_INGEST_SHARD_CHANGED',
  'ERR_INGEST_LOCKED',
  'ERR_INGEST_LEASE_LOST',
  'ERR_MANIFEST_GC_BUSY',
  'ERR_MANIFEST_GC_INTERRUPTED',
])

const UNAVAILABLE = new Set([
  'ERR_CAS_TIMEOUT',
  'ERR_CAS_UNREACHABLE',
  'ERR_CAS_OUTCOME_UNKNOWN',
  'ERR_MANIFEST_COMMIT_UNKNOWN',
])

const HINTS: Record<string, string> = {
  ERR_CAS_TIMEOUT:
    'the server stopped answering; check it and run the command again (DREAMDB_S3_TIMEOUT_MS sets the deadline)',
  ERR_CAS_UNREACHABLE:
    'check that the server is running and the URL in --backend / DREAMDB_BACKEND, then run the command again',
  ERR_CAS_OUTCOME_UNKNOWN:
    'the server stopped answering during a write that may have landed; check with dreamdb log before running it again',
  ERR_MANIFEST_COMMIT_UNKNOWN:
    'the commit may or may not be on the branch; dreamdb log --ref-name <ref> shows whether its manifest is there before you run it again',
  ERR_MANIFEST_REF_NOT_FOUND: 'dreamdb refs lists them',
  ERR_CAS_REF_NOT_FOUND: 'dreamdb refs lists them',
  ERR_DATASET_UNKNOWN_FIELD: 'dreamdb inspect --ref-name <ref> shows the schema and layers',
  ERR_MANIFEST_REF_EXISTS: 'pick another name; dreamdb refs lists the names in use',
  ERR_MANIFEST_LABEL_TAKEN: 'snapshots never move; choose a new label',
  ERR_MANIFEST_CONFLICT: 'another writer changed the branch in a way that does not commute; run it again',
  ERR_MANIFEST_RETRIES_EXHAUSTED: 'the branch is very busy; run it again',
  ERR_MANIFEST_SNAPSHOT_IMMUTABLE: 'branch from it: dreamdb branch <name> --from <snapshot>',
  ERR_DATASET_READ_ONLY: 'branch from it: dreamdb branch <name> --from <snapshot>',
  ERR_DATASET_MERGE_CONFLICT:
    'dreamdb log and diff of both sides show what each did; restore, or write the layer again on one side',
  ERR_MANIFEST_INVALID_REF_NAME:
    "names are '/'-separated segments of letters, digits, '.', '_', '-', not starting with '_', '.' or '-'",
  ERR_CAS_INVALID_REF_NAME:
    "names are '/'-separated segments of letters, digits, '.', '_', '-', not starting with '_', '.' or '-'",
  ERR_MANIFEST_INVALID_SCHEMA: 'dreamdb init --help shows the schema format',
  ERR_CAS_INVALID_URL:
    '--backend takes a folder, file:///abs/path, http(s)://host:port/<bucket> or s3://<bucket>',
  ERR_CAS_BUCKET_NOT_FOUND:
    'dreamdb init <name> --schema ... --create-bucket creates it; or check the bucket in --backend / DREAMDB_BACKEND / .dreamdb.json',
  ERR_CAS_ACCESS_DENIED:
    'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for MinIO: its root user and password or an access key), or AWS_PROFILE',
  ERR_CAS_STORAGE: 'check that the backend is reachable and writable',
  ERR_CAS_INTEGRITY: 'the store is damaged: an object does not match its CID; restore it from a copy',
  ERR_CAS_NOT_FOUND: 'the store is missing an object this state references; restore it from a copy',
  ERR_MANIFEST_CORRUPT: 'the store is damaged; restore the object from a copy',
  ERR_MANIFEST_INTEGRITY:
    'the store is damaged: objects of this state disagree with each other; restore them from a copy',
  ERR_MANIFEST_UNSUPPORTED_VERSION: 'upgrade dreamdb',
  ERR_CAS_NO_CONDITIONAL_WRITES: 'this S3 server ignores conditional writes; use MinIO >= 2025-09 or AWS S3',
  ERR_CLI_USAGE: 'dreamdb <verb> --help shows the options',
  ERR_MANIFEST_REF_MOVED: 'someone moved it since you looked; dreamdb log --ref-name <ref> shows what landed',
  ERR_MANIFEST_GC_REFUSED: 'dreamdb fsck names the damage; nothing was deleted',
  ERR_MANIFEST_GC_BUSY:
    'another dreamdb gc is deleting in this store; run it again when that one ends (one that died is taken over after 60 s)',
  ERR_MANIFEST_GC_INTERRUPTED: 'a writer needed objects the sweep was judging; run dreamdb gc again',
  ERR_DATASET_MISSING_OBJECT:
    'the store is damaged: dreamdb fsck lists every missing object and the refs that reach it; restore them from a copy',
  ERR_MANIFEST_INVALID_GC_OPTION: 'the grace period is at least 1h (default 7d)',
}

export interface Classified {
  exitCode: number
  /** The stable code shown on stderr (`ERR_…`), or `ERR_CLI_INTERNAL`. */
  code: string
  message: string
  hint: string | undefined
  internal: boolean
}

/**
 * The prefixes of DreamDB's own error codes (one per package). Node's own codes also start
 * with `ERR_` (`ERR_INVALID_ARG_TYPE`, `ERR_STREAM_PREMATURE_CLOSE`): those are bugs of ours,
 * not something the user did, so they are internal (exit 70, stack with DREAMDB_DEBUG).
 */
const OWN_CODE = /^ERR_(CLI|CAS|MANIFEST|DATASET|ARROW|VECTOR|INGEST|BRIDGE)_[A-Z0-9_]+$/

function codeOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code
  return typeof code === 'string' && OWN_CODE.test(code) ? code : undefined
}

/** The signal behind an abort: the reason given by the program's signal handler, if any. */
function interruption(error: unknown): InterruptedError | undefined {
  for (let e = error, depth = 0; e != null && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof InterruptedError) return e
  }
  return undefined
}

/** Map any thrown value to what the user sees and the exit code. */
export function classify(error: unknown): Classified {
  const message = error instanceof Error ? error.message : String(error)
  if ((error as { name?: string } | null)?.name === 'AbortError') {
    // Node's own AbortError carries the signal's reason as its cause.
    const by = interruption(error)
    return {
      exitCode: by ? SIGNAL_EXIT[by.signalName] : EXIT.interrupted,
      code: InterruptedError.code,
      message: by?.message ?? 'interrupted',
      hint: undefined,
      internal: false,
    }
  }
  const code = codeOf(error)
  if (code === undefined) {
    return {
      exitCode: EXIT.internal,
      code: 'ERR_CLI_INTERNAL',
      message,
      hint: 'this is a bug in dreamdb; please file an issue with DREAMDB_DEBUG=1 output',
      internal: true,
    }
  }
  // The CLI's own errors and @dreamdb/ingest's carry a hint for people.
  const hint = (error as { hint?: unknown }).hint
  const own = typeof hint === 'string' ? hint : undefined
  const exitCode =
    code === UsageError.code || code === FieldKindError.code || code === 'ERR_INGEST_INVALID_OPTION'
      ? EXIT.usage
      : NOT_FOUND.has(code)
        ? EXIT.notFound
        : CONFLICT.has(code)
          ? EXIT.conflict
          : UNAVAILABLE.has(code)
            ? EXIT.unavailable
            : EXIT.user
  return { exitCode, code, message, hint: own ?? HINTS[code], internal: false }
}

/** One line: `dreamdb: CODE: message  (hint: …)`; newlines inside the message are folded. */
export function formatError(c: Classified): string {
  const oneLine = c.message.replace(/\s*\n\s*/g, ' ').trim()
  return `dreamdb: ${c.code}: ${oneLine}${c.hint ? `  (hint: ${c.hint})` : ''}`
}
