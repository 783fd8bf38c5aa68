import { randomUUID } from 'node:crypto'
import { Agent as HttpAgent } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import { availableParallelism } from 'node:os'
import { Readable } from 'node:stream'
import {
  AbortMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  type ListObjectsV2Command,
  PutObjectCommand,
  paginateListObjectsV2,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { NodeHttpHandler } from '@smithy/node-http-handler'
import { onAbort, retry } from '../concurrency.js'
import { toHex } from '../digest.js'
import {
  AccessDeniedError,
  BucketNotFoundError,
  ConditionalWritesUnsupportedError,
  InvalidStoreOptionError,
  ObjectTooLargeError,
  StoreTimeoutError,
  StoreUnreachableError,
} from '../errors.js'
import type { ReadSink } from '../hashing.js'
import { PROBES, STAGING } from '../layout.js'
import type {
  Backend,
  ConditionalWriteResult,
  DeleteResult,
  LeftoverEntry,
  ListedKey,
  ObjectWrite,
  StagedObject,
  VersionedBlob,
} from './backend.js'
import { NotFoundSignal } from './backend.js'
import { type ReadThreads, sharedReadThreads, THREAD_READ_MIN_BYTES } from './read-threads.js'

/** Above this, a put asks whether the object exists before sending its bytes. */
const HEAD_FIRST_BYTES = 1 << 20
/** The largest object a single CopyObject can publish. */
const MAX_COPY_BYTES = 5 * 1024 ** 3
const MULTIPART_PART_BYTES = 8 << 20
const MAX_CONFLICT_RETRIES = 6
/**
 * A put that finds its object already stored with a `LastModified` older than this copies
 * it onto itself, which makes it fresh for a concurrent GC (design/0008). Far below the GC's
 * one-hour floor on the grace period.
 */
export const FRESHEN_AFTER_MS = 10 * 60_000
/** FRESHEN_AFTER_MS, or (tests only, since MinIO's times cannot be set back) `DREAMDB_TEST_FRESHEN_AFTER_MS`. */
function freshenAfterMs(): number {
  const raw = process.env.DREAMDB_TEST_FRESHEN_AFTER_MS
  return raw !== undefined && /^\d+$/.test(raw) ? Number(raw) : FRESHEN_AFTER_MS
}
/** Keys per DeleteObjects request (S3's limit). */
const DELETE_BATCH = 1000
/** Keys HEADed then deleted together when their age is checked right before the delete. */
const CHECKED_DELETE_GROUP = 32

/** How long a server may stay silent in one request (no answer, no body byte) by default. */
export const DEFAULT_TIMEOUT_MS = 30_000
/** How long a TCP (and TLS) connection may take to open by default. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000
/** Attempts of an operation that is safe to repeat (reads, content-addressed puts) by default. */
export const DEFAULT_ATTEMPTS = 3
/** A request that sends a body is allowed this much more time per byte (1 MiB/s at the slowest). */
const MS_PER_SENT_BYTE = 1000 / (1 << 20)

/** The deadlines and retries of every S3 request (see `resolveS3Timeouts`). */
export interface S3Timeouts {
  /** Silence allowed in one request: until the answer starts, then between body chunks. */
  timeoutMs: number
  /** Time allowed to open a connection. */
  connectTimeoutMs: number
  /** Attempts of a read or a content-addressed put before its typed error (1 = no retry). */
  attempts: number
}

/**
 * The S3 deadlines: each from the option when given, else from its environment variable
 * (`DREAMDB_S3_TIMEOUT_MS`, `DREAMDB_S3_CONNECT_TIMEOUT_MS`, `DREAMDB_S3_ATTEMPTS`), else
 * the default (30 s, 10 s, 3). Throws `InvalidStoreOptionError` for a value that is not a
 * positive integer.
 */
export function resolveS3Timeouts(
  options: Partial<S3Timeouts> = {},
  env: Record<string, string | undefined> = process.env,
): S3Timeouts {
  const pick = (option: keyof S3Timeouts, variable: string, fallback: number, max: number): number => {
    const given = options[option]
    const [name, raw] =
      given !== undefined ? [option, given] : [variable, env[variable] === '' ? undefined : env[variable]]
    if (raw === undefined) return fallback
    const value = typeof raw === 'number' ? raw : /^\d+$/.test(raw.trim()) ? Number(raw) : Number.NaN
    if (!Number.isSafeInteger(value) || value < 1 || value > max) {
      throw new InvalidStoreOptionError(name, raw, `an integer from 1 to ${max}`)
    }
    return value
  }
  const day = 86_400_000
  return {
    timeoutMs: pick('timeoutMs', 'DREAMDB_S3_TIMEOUT_MS', DEFAULT_TIMEOUT_MS, day),
    connectTimeoutMs: pick(
      'connectTimeoutMs',
      'DREAMDB_S3_CONNECT_TIMEOUT_MS',
      DEFAULT_CONNECT_TIMEOUT_MS,
      day,
    ),
    attempts: pick('attempts', 'DREAMDB_S3_ATTEMPTS', DEFAULT_ATTEMPTS, 100),
  }
}

export interface S3Location {
  /** `undefined` for AWS (`s3://`), else the server's origin, e.g. `http://127.0.0.1:9000`. */
  endpoint: string | undefined
  bucket: string
  /** '' or a key prefix ending in '/'. */
  prefix: string
}

export interface S3BackendInit {
  /** Use this client instead of building one (tests wrap it with middleware). */
  client?: S3Client
  /** Create the bucket when it does not exist. @default false */
  createBucket?: boolean
  /** Sockets per host. @default 64 */
  maxSockets?: number
  /** Hash bodies of 1 MiB and more on read threads. @default true with more than one core */
  readThreads?: boolean
  /** Deadlines and retries; anything not given comes from the environment or the defaults. */
  timeouts?: Partial<S3Timeouts>
}

interface S3ErrorShape {
  name?: string
  Code?: string
  $metadata?: { httpStatusCode?: number }
}

function status(error: unknown): number | undefined {
  return (error as S3ErrorShape | undefined)?.$metadata?.httpStatusCode
}

function errorName(error: unknown): string | undefined {
  const shape = error as S3ErrorShape | undefined
  return shape?.name ?? shape?.Code
}

function isNotFound(error: unknown): boolean {
  const name = errorName(error)
  return name === 'NoSuchKey' || name === 'NotFound' || status(error) === 404
}

function isPreconditionFailed(error: unknown): boolean {
  return errorName(error) === 'PreconditionFailed' || status(error) === 412
}

/** S3's "a conflicting conditional operation is in progress, retry" (409). */
function isConditionalConflict(error: unknown): boolean {
  return errorName(error) === 'ConditionalRequestConflict' || status(error) === 409
}

/**
 * Build the SDK client: path-style addressing, pooled keep-alive sockets, default
 * credentials, a connection timeout and a socket inactivity timeout. `maxAttempts` is 1 for
 * the client the backend sends its own requests with (it retries them itself, and never a
 * conditional ref write whose outcome is unknown); multipart uploads use one that retries.
 */
export function createS3Client(
  location: S3Location,
  maxSockets = 64,
  timeouts: S3Timeouts = resolveS3Timeouts(),
  maxAttempts = 1,
  requestHandler?: NodeHttpHandler,
): S3Client {
  const config: S3ClientConfig = {
    forcePathStyle: true,
    // DreamDB hashes every object itself; SDK checksums would only add work and break
    // servers that reject the newer checksum headers.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    maxAttempts,
    requestHandler:
      requestHandler ??
      new NodeHttpHandler({
        httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
        httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
        connectionTimeout: timeouts.connectTimeoutMs,
        // Inactivity of the socket in either direction, body included.
        socketTimeout: timeouts.timeoutMs,
      }),
  }
  if (location.endpoint !== undefined) {
    config.endpoint = location.endpoint
    // Self-hosted servers rarely care about the region, but SigV4 needs one.
    config.region = process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1'
  }
  return new S3Client(config)
}

/**
 * The deadline of one attempt: it fires after `ms` of silence. While a body is read it is
 * re-armed at every chunk and paused while the caller holds a chunk, so only the server's
 * silence counts, never the caller's own work or a slow but moving transfer.
 */
class Deadline {
  readonly #controller = new AbortController()
  /** Aborts when the deadline passes or the caller's signal aborts. */
  readonly signal: AbortSignal = this.#controller.signal
  /** Stops hearing the caller's abort (`onAbort`: one listener per caller signal, whatever the requests). */
  readonly #unwatch: () => void
  #timer: ReturnType<typeof setTimeout> | undefined
  #expired = false

  constructor(
    readonly ms: number,
    caller: AbortSignal | undefined,
    firstMs = ms,
  ) {
    this.#unwatch =
      caller === undefined ? () => {} : onAbort(caller, (reason) => this.#controller.abort(reason))
    this.#arm(firstMs)
  }

  get expired(): boolean {
    return this.#expired
  }

  /** Progress: the server said something; the silence starts again. */
  touch(): void {
    this.#arm(this.ms)
  }

  /** The caller is busy with what it got; the server is not being waited for. */
  pause(): void {
    clearTimeout(this.#timer)
  }

  clear(): void {
    clearTimeout(this.#timer)
    this.#unwatch()
  }

  #arm(ms: number): void {
    clearTimeout(this.#timer)
    this.#timer = setTimeout(() => {
      this.#expired = true
      this.#controller.abort(Object.assign(new Error(`no answer within ${ms} ms`), { name: 'TimeoutError' }))
    }, ms)
  }
}

/** Chunks of a response body, failing when the deadline passes while waiting for the next. */
/**
 * A bucket name or key as a URL path, segment by segment, the way the SDK writes S3 paths
 * (RFC 3986: unreserved characters and `/` kept, the rest percent-encoded): the signer takes
 * the path as it will be sent.
 */
function encodeKey(key: string): string {
  return key.replace(/[^A-Za-z0-9\-._~/]/g, (c) =>
    [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  )
}

async function* deadlineChunks(body: unknown, deadline: Deadline | undefined): AsyncGenerator<Buffer> {
  const stream = body as Readable
  if (deadline === undefined) {
    for await (const chunk of stream) yield chunk as Buffer
    return
  }
  const onAbort = (): void => {
    stream.destroy(deadline.signal.reason instanceof Error ? deadline.signal.reason : new Error('aborted'))
  }
  if (deadline.signal.aborted) onAbort()
  deadline.signal.addEventListener('abort', onAbort, { once: true })
  const chunks = stream[Symbol.asyncIterator]()
  try {
    for (;;) {
      deadline.touch()
      const next = await chunks.next()
      deadline.pause()
      if (next.done) return
      yield next.value as Buffer
    }
  } finally {
    deadline.signal.removeEventListener('abort', onAbort)
    deadline.pause()
    if (!stream.readableEnded) stream.destroy()
  }
}

/** Copy a response body into `sink`, reporting progress as chunks land. */
async function readBody(
  body: unknown,
  expectedLength: number | undefined,
  sink: ReadSink,
  deadline?: Deadline,
): Promise<void> {
  if (expectedLength === undefined) {
    const parts: Buffer[] = []
    for await (const chunk of deadlineChunks(body, deadline)) parts.push(chunk)
    const all = Buffer.concat(parts)
    sink.buffer(all.byteLength).set(all)
    sink.wrote(all.byteLength)
    return
  }
  const bytes = sink.buffer(expectedLength)
  let offset = 0
  for await (const piece of deadlineChunks(body, deadline)) {
    if (offset + piece.byteLength > expectedLength)
      throw new Error('response body longer than Content-Length')
    bytes.set(piece, offset)
    offset += piece.byteLength
    sink.wrote(offset)
  }
  if (offset !== expectedLength)
    throw Object.assign(new Error(`response body ended after ${offset} of ${expectedLength} bytes`), {
      code: 'ERR_CAS_SHORT_BODY',
    })
}

/** A whole small body (refs, ranges) as plain bytes. */
async function readSmallBody(
  body: unknown,
  expectedLength: number | undefined,
  deadline?: Deadline,
): Promise<Uint8Array> {
  let bytes = new Uint8Array(0)
  await readBody(
    body,
    expectedLength,
    { buffer: (size) => (bytes = new Uint8Array(size)), wrote: () => {} },
    deadline,
  )
  return bytes
}

/**
 * Which requests may be sent again after a failure: `'repeatable'` ones (reads, and puts of
 * content-addressed objects, whose every outcome is the same object) after any transient
 * failure; `'unapplied'` ones (conditional ref writes) only when the failed attempt cannot
 * have been applied (never sent, or refused with 503), since one that was may land.
 */
type RetryPolicy = 'repeatable' | 'unapplied'

/** What went wrong in one attempt, for retrying and for the typed error. */
type Failure =
  | { kind: 'timeout'; landed: true }
  /** `sent`: it reached the server; `landed`: it may have been applied (sent, not refused). */
  | { kind: 'unreachable'; sent: boolean; landed: boolean; reason: string }
  /** The server answered 500: retried when repeatable, then passed on as it is. */
  | { kind: 'server'; landed: true }
  /** Anything else (404, 412, 403, ...): an answer, passed on at once. */
  | { kind: 'final' }

/** Codes of a connection that never carried the request. */
const UNSENT_CODES = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EAI_NONAME',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'EADDRNOTAVAIL',
])
/** Codes of a connection lost while the request or its answer was under way. */
const LOST_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_CAS_SHORT_BODY',
  'UND_ERR_SOCKET',
])

/** What is left of a request that failed for good: its typed error (a timeout, an unreachable server) or the failure itself. */
function finalError(
  request: { operation: string; target: string; store: string; timeoutMs: number },
  failure: Failure,
  tries: number,
  error: unknown,
  sent: boolean = failure.kind !== 'unreachable' || failure.sent,
  landed: boolean = failure.kind !== 'final' && failure.landed,
): unknown {
  const { operation, target, store, timeoutMs } = request
  if (failure.kind === 'timeout')
    return new StoreTimeoutError(operation, target, store, timeoutMs, tries, { cause: error })
  if (failure.kind === 'unreachable')
    return new StoreUnreachableError(operation, target, store, failure.reason, tries, sent, landed, {
      cause: error,
    })
  return error
}

function classifyFailure(error: unknown, expired: boolean): Failure {
  if (expired) return { kind: 'timeout', landed: true }
  const shape = error as { code?: unknown; name?: unknown; message?: unknown; cause?: unknown } | undefined
  const code = typeof shape?.code === 'string' ? shape.code : undefined
  const message = typeof shape?.message === 'string' ? shape.message : ''
  // A GET sent by a read thread (read-threads.ts) reports its deadlines by these codes.
  if (code === 'ERR_CAS_SILENT') return { kind: 'timeout', landed: true }
  if (code === 'ERR_CAS_CONNECT_TIMEOUT')
    return { kind: 'unreachable', sent: false, landed: false, reason: 'connection timed out' }
  if (code !== undefined && UNSENT_CODES.has(code))
    return { kind: 'unreachable', sent: false, landed: false, reason: code }
  if (shape?.name === 'TimeoutError') {
    // The handler's connection timeout: nothing was sent. Its socket inactivity timeout: silence.
    if (/establish a connection/.test(message))
      return { kind: 'unreachable', sent: false, landed: false, reason: 'connection timed out' }
    if (code === undefined || /inactivity|timed out/.test(message)) return { kind: 'timeout', landed: true }
  }
  if (code !== undefined && LOST_CODES.has(code))
    return { kind: 'unreachable', sent: true, landed: true, reason: `connection lost (${code})` }
  if (message === 'socket hang up' || message === 'aborted')
    return { kind: 'unreachable', sent: true, landed: true, reason: `connection lost (${message})` }
  const httpStatus = status(error)
  if (httpStatus === 502 || httpStatus === 503 || httpStatus === 504) {
    // 503 is the server refusing (SlowDown, a MinIO below its quorum): nothing applied. A
    // gateway's 502/504 may come after the server behind it applied the request.
    const reason = `HTTP ${httpStatus} ${errorName(error) ?? ''}`.trim()
    return { kind: 'unreachable', sent: true, landed: httpStatus !== 503, reason }
  }
  if (httpStatus !== undefined && httpStatus >= 500) return { kind: 'server', landed: true }
  if (shape?.cause !== undefined && shape.cause !== error && httpStatus === undefined) {
    const inner = classifyFailure(shape.cause, false)
    if (inner.kind !== 'final') return inner
  }
  return { kind: 'final' }
}

/** An answer other than 200 to a GET a read thread sent, shaped as the SDK's errors are. */
function httpError(httpStatusCode: number, body: string): Error {
  const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1]
  const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1]
  return Object.assign(new Error(message ?? `HTTP ${httpStatusCode}`), {
    name: code ?? `HTTP ${httpStatusCode}`,
    ...(code === undefined ? {} : { Code: code }),
    $metadata: { httpStatusCode },
  })
}

/**
 * Any S3-compatible server. Objects are written with `If-None-Match: *` (a 412 means the
 * object is already there), refs with `If-None-Match: *` to create and `If-Match: <etag>`
 * to update, so the server arbitrates every race. Before the first ref write the store
 * proves the server enforces both headers.
 *
 * Every request has a deadline (`S3Timeouts`): silence longer than `timeoutMs` fails the
 * attempt. Reads and object puts are retried with jittered backoff up to `attempts` times;
 * a conditional ref write is sent again only if no attempt reached the server. What is left
 * becomes `StoreTimeoutError` or `StoreUnreachableError` naming the endpoint.
 *
 * @internal
 */
export class S3Backend implements Backend {
  readonly description: string
  /** A ref write that got no answer may still land: the store must find out, not assume. */
  readonly ambiguousWrites = true
  readonly #client: S3Client
  /** Multipart uploads: the SDK retries their parts itself (they are repeatable). */
  readonly #uploadClient: S3Client
  readonly #ownsClient: boolean
  readonly #location: S3Location
  readonly #timeouts: S3Timeouts
  /** Where large bodies are hashed; `undefined` hashes them as they arrive, on this thread. */
  readonly #threads: ReadThreads | undefined
  /**
   * Whether object reads are sent by the read threads over plain HTTP (signed here) instead
   * of through the SDK: with read threads, a server the caller named (not AWS, whose
   * endpoints the SDK resolves) and the store's own client (a caller's client may carry
   * middleware that every request must pass through).
   */
  readonly #directGets: boolean

  private constructor(
    location: S3Location,
    clients: { client: S3Client; uploadClient: S3Client; owned: boolean },
    timeouts: S3Timeouts,
    readThreads: boolean,
  ) {
    this.#location = location
    this.#client = clients.client
    this.#uploadClient = clients.uploadClient
    this.#ownsClient = clients.owned
    this.#timeouts = timeouts
    this.#threads = readThreads ? sharedReadThreads() : undefined
    this.#directGets = this.#threads !== undefined && clients.owned && location.endpoint !== undefined
    const where = location.endpoint ?? 's3:/'
    this.description = `${where}/${location.bucket}${location.prefix === '' ? '' : `/${location.prefix.slice(0, -1)}`}`
  }

  /** Open the bucket: one HeadBucket, which also proves the credentials work. */
  static async open(
    location: S3Location,
    init: S3BackendInit = {},
    signal?: AbortSignal,
  ): Promise<S3Backend> {
    const timeouts = resolveS3Timeouts(init.timeouts)
    let clients: { client: S3Client; uploadClient: S3Client; owned: boolean }
    if (init.client !== undefined) {
      clients = { client: init.client, uploadClient: init.client, owned: false }
    } else {
      const client = createS3Client(location, init.maxSockets, timeouts, 1)
      const handler = client.config.requestHandler as NodeHttpHandler
      const uploadClient = createS3Client(location, init.maxSockets, timeouts, timeouts.attempts, handler)
      clients = { client, uploadClient, owned: true }
    }
    const backend = new S3Backend(location, clients, timeouts, init.readThreads ?? availableParallelism() > 1)
    try {
      await backend.#ensureBucket(init.createBucket === true, signal)
    } catch (error) {
      await backend.close()
      throw error
    }
    return backend
  }

  get #endpointName(): string {
    return this.#location.endpoint ?? 'AWS S3'
  }

  /**
   * Run one request (`attempt` sends it and reads its answer) under a deadline, again after
   * a transient failure when `policy` allows, with randomized backoff. A caller's abort is
   * its signal's reason; an answer the server gave (404, 412, ...) passes through as it is.
   */
  async #request<T>(
    operation: string,
    target: string,
    policy: RetryPolicy,
    attempt: (deadline: Deadline) => Promise<T>,
    signal: AbortSignal | undefined,
    sentBytes = 0,
  ): Promise<T> {
    const { timeoutMs, attempts } = this.#timeouts
    // The last attempt's failure, and whether any attempt reached the server or may have landed.
    let failure: Failure = { kind: 'final' }
    let tries = 0
    let anySent = false
    let anyLanded = false
    try {
      return await retry(
        async (n) => {
          tries = n
          const deadline = new Deadline(
            timeoutMs,
            signal,
            timeoutMs + Math.ceil(sentBytes * MS_PER_SENT_BYTE),
          )
          try {
            return await attempt(deadline)
          } catch (error) {
            failure = classifyFailure(error, deadline.expired)
            if (failure.kind !== 'final') {
              anySent ||= failure.kind !== 'unreachable' || failure.sent
              anyLanded ||= failure.landed
            }
            throw error
          } finally {
            deadline.clear()
          }
        },
        {
          attempts,
          retryable: () => failure.kind !== 'final' && (policy === 'repeatable' || !failure.landed),
          backoff: { minMs: 50, maxMs: 2_000 },
          signal,
        },
      )
    } catch (error) {
      if (signal?.aborted) throw error
      const request = { operation, target, store: this.description, timeoutMs }
      throw finalError(request, failure, tries, error, anySent, anyLanded)
    }
  }

  /** One request whose answer is all that is wanted: `send` gets the attempt's abort signal. */
  #send<T>(
    operation: string,
    target: string,
    policy: RetryPolicy,
    send: (options: { abortSignal: AbortSignal }) => Promise<T>,
    signal: AbortSignal | undefined,
    sentBytes = 0,
  ): Promise<T> {
    return this.#request(
      operation,
      target,
      policy,
      (deadline) => send({ abortSignal: deadline.signal }),
      signal,
      sentBytes,
    )
  }

  /** The bucket and the full key of an object of this store, as every object command takes them. */
  #at(key: string): { Bucket: string; Key: string } {
    return { Bucket: this.#location.bucket, Key: this.#key(key) }
  }

  /** GetObject of a key (or a byte range of it) under an attempt's deadline. */
  #getObject(key: string, deadline: Deadline, Range?: string) {
    return this.#client.send(new GetObjectCommand({ ...this.#at(key), ...(Range ? { Range } : {}) }), {
      abortSignal: deadline.signal,
    })
  }

  /** CopyObject of a full source key (this store's prefix included) onto `key`. */
  #copy(
    operation: string,
    key: string,
    source: string,
    signal: AbortSignal | undefined,
    size: number,
    Metadata?: Record<string, string>,
  ): Promise<unknown> {
    const CopySource = `${this.#location.bucket}/${encodeURI(source)}`
    const command = new CopyObjectCommand({
      ...this.#at(key),
      CopySource,
      ...(Metadata ? { MetadataDirective: 'REPLACE', Metadata } : {}),
    })
    return this.#send(
      operation,
      key,
      'repeatable',
      (options) => this.#client.send(command, options),
      signal,
      size,
    )
  }

  /** Delete a full key once, without retries, for cleanup that may fail (a staging object, a probe). */
  async #deleteQuietly(fullKey: string): Promise<void> {
    await this.#client
      .send(new DeleteObjectCommand({ Bucket: this.#location.bucket, Key: fullKey }), {
        abortSignal: AbortSignal.timeout(this.#timeouts.timeoutMs),
      })
      .catch(() => {})
  }

  async #ensureBucket(create: boolean, signal?: AbortSignal): Promise<void> {
    const Bucket = this.#location.bucket
    try {
      await this.#send(
        'open bucket',
        Bucket,
        'repeatable',
        (options) => this.#client.send(new HeadBucketCommand({ Bucket }), options),
        signal,
      )
      return
    } catch (error) {
      // No credentials anywhere in the AWS chain is refused credentials too, not a bug.
      if (status(error) === 403 || status(error) === 401 || errorName(error) === 'CredentialsProviderError') {
        throw new AccessDeniedError(Bucket, this.#endpointName, { cause: error })
      }
      if (!isNotFound(error)) throw error
      if (!create) throw new BucketNotFoundError(Bucket, this.#endpointName, { cause: error })
    }
    try {
      await this.#send(
        'create bucket',
        Bucket,
        'repeatable',
        (options) => this.#client.send(new CreateBucketCommand({ Bucket }), options),
        signal,
      )
    } catch (error) {
      const name = errorName(error)
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw error
    }
  }

  #key(key: string): string {
    return `${this.#location.prefix}${key}`
  }

  /**
   * A GET of an object under `#request` (deadline, retries, final error): false when the
   * object is not there, whichever way `attempt` sends it.
   */
  async #getOrMissing(
    key: string,
    attempt: (deadline: Deadline) => Promise<void>,
    signal: AbortSignal | undefined,
  ): Promise<boolean> {
    try {
      await this.#request('get', key, 'repeatable', attempt, signal)
      return true
    } catch (error) {
      if (isNotFound(error)) return false
      throw error
    }
  }

  /**
   * The URL and headers of a GET of `key`, signed by the client's own signer (the SDK's
   * SigV4, with the client's credentials and region), for a read thread to send as they are:
   * path-style on the endpoint the caller named, with an unsigned payload, as the SDK
   * signs its own S3 requests.
   */
  async #signGet(key: string): Promise<{ url: string; headers: Record<string, string> }> {
    const origin = new URL(this.#location.endpoint!)
    const path = `/${encodeKey(this.#location.bucket)}/${encodeKey(this.#key(key))}`
    const signer = await this.#client.config.signer()
    const signed = await signer.sign({
      method: 'GET',
      protocol: origin.protocol,
      hostname: origin.hostname,
      ...(origin.port ? { port: Number(origin.port) } : {}),
      path,
      query: {},
      headers: { host: origin.host, 'x-amz-content-sha256': 'UNSIGNED-PAYLOAD' },
    })
    return { url: `${origin.protocol}//${origin.host}${path}`, headers: signed.headers }
  }

  /**
   * A GET of an object sent and received on a read thread, hashed there as it lands: the
   * main thread only signs it (design/0002: the SDK's body stream cost this thread most of
   * an iteration from MinIO, and its garbage). Same deadlines, retries and errors as the
   * SDK path: the thread enforces the silence and connection deadlines and reports them by
   * code; an abort cancels the request there.
   */
  #directGet(key: string, sink: ReadSink, signal?: AbortSignal): Promise<boolean> {
    const { timeoutMs, connectTimeoutMs } = this.#timeouts
    return this.#getOrMissing(
      key,
      async (deadline) => {
        // The thread keeps the deadline; this one only passes the caller's abort on.
        deadline.pause()
        const signed = await this.#signGet(key)
        // Recycling: the body goes into a spare shared buffer when it fits, else a new shared one.
        const spare = sink.spare?.()
        const reply = await this.#threads!.get(
          { ...signed, timeoutMs, connectTimeoutMs },
          deadline.signal,
          { spare, shared: sink.recycling === true },
          sink.expected,
        )
        if (spare !== undefined && reply.intoSpare !== true) sink.unused?.(spare)
        if (reply.status !== 200) throw httpError(reply.status, reply.body ?? '')
        sink.hashed!(reply.bytes!, reply.digest!)
      },
      signal,
    )
  }

  async readObject(key: string, sink: ReadSink, signal?: AbortSignal): Promise<boolean> {
    if (this.#directGets && sink.hashed !== undefined) return await this.#directGet(key, sink, signal)
    return await this.#getOrMissing(
      key,
      async (deadline) => {
        const response = await this.#getObject(key, deadline)
        const size = response.ContentLength
        if (
          size !== undefined &&
          size >= THREAD_READ_MIN_BYTES &&
          sink.hashed !== undefined &&
          this.#threads
        ) {
          // Received here, hashed on a read thread while this thread receives the next body.
          const spare = sink.spare?.(size)
          const bytes = spare === undefined ? Buffer.allocUnsafeSlow(size) : Buffer.from(spare, 0, size)
          await readBody(response.Body, size, { buffer: () => bytes, wrote: () => {} }, deadline)
          const { bytes: hashed, digest } = await this.#threads.hash(bytes.buffer, size)
          sink.hashed(hashed, digest)
          return
        }
        await readBody(response.Body, size, sink, deadline)
      },
      signal,
    )
  }

  async *streamObject(key: string, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    let body: Readable
    let deadline: Deadline | undefined
    try {
      ;({ body, deadline } = await this.#request(
        'stream',
        key,
        'repeatable',
        async (attemptDeadline) => {
          const response = await this.#getObject(key, attemptDeadline)
          return { body: response.Body as Readable, deadline: attemptDeadline }
        },
        signal,
      ))
    } catch (error) {
      if (isNotFound(error)) throw new NotFoundSignal(key)
      throw error
    }
    // The body outlives the attempt: a deadline of its own while it is read.
    deadline = new Deadline(this.#timeouts.timeoutMs, signal)
    try {
      for await (const chunk of deadlineChunks(body, deadline)) yield chunk
    } catch (error) {
      if (signal?.aborted) throw signal.reason
      // Chunks already went to the caller: the body cannot be asked for again.
      const request = {
        operation: 'stream',
        target: key,
        store: this.description,
        timeoutMs: this.#timeouts.timeoutMs,
      }
      throw finalError(request, classifyFailure(error, deadline.expired), 1, error, true, true)
    } finally {
      deadline.clear()
      // An unconsumed body holds its socket; release it when the caller stops early.
      body.destroy()
    }
  }

  async readRange(
    key: string,
    offset: number,
    length: number,
    signal?: AbortSignal,
  ): Promise<Uint8Array | undefined | { outOfRange: true; size: number }> {
    if (length === 0) {
      const size = await this.objectSize(key, signal)
      if (size === undefined) return undefined
      return offset > size ? { outOfRange: true, size } : new Uint8Array(0)
    }
    try {
      const { bytes, total } = await this.#request(
        'get range of',
        key,
        'repeatable',
        async (deadline) => {
          const response = await this.#getObject(key, deadline, `bytes=${offset}-${offset + length - 1}`)
          const total = Number(/\/(\d+)$/.exec(response.ContentRange ?? '')?.[1])
          return { bytes: await readSmallBody(response.Body, response.ContentLength, deadline), total }
        },
        signal,
      )
      if (bytes.byteLength !== length) {
        return { outOfRange: true, size: Number.isFinite(total) ? total : offset + bytes.byteLength }
      }
      return bytes
    } catch (error) {
      if (isNotFound(error)) return undefined
      if (status(error) === 416 || errorName(error) === 'InvalidRange') {
        const size = await this.objectSize(key, signal)
        return size === undefined ? undefined : { outOfRange: true, size }
      }
      throw error
    }
  }

  async objectSize(key: string, signal?: AbortSignal): Promise<number | undefined> {
    return (await this.#head(key, signal))?.size
  }

  async freshenObject(key: string, signal?: AbortSignal): Promise<number | undefined> {
    return await this.#freshen(key, signal)
  }

  async writeObjectIfAbsent(
    key: string,
    bytes: Uint8Array,
    signal?: AbortSignal,
    sha256?: Uint8Array,
  ): Promise<ObjectWrite> {
    if (bytes.byteLength >= HEAD_FIRST_BYTES) {
      const existing = await this.#freshen(key, signal)
      if (existing !== undefined) return { written: false, size: existing }
    }
    const payload = sha256 === undefined ? undefined : toHex(sha256)
    const result = await this.#conditionalPut(key, bytes, null, 'repeatable', signal, payload)
    if (result.ok) return { written: true }
    const existing = await this.#freshen(key, signal)
    return existing === undefined ? { written: false } : { written: false, size: existing }
  }

  /**
   * An object a put found already stored: its size, after copying it onto itself when its
   * `LastModified` is older than FRESHEN_AFTER_MS (S3 has no touch; a copy in place with new
   * metadata is the way to move `LastModified`). `undefined` when it is absent.
   */
  async #freshen(key: string, signal?: AbortSignal): Promise<number | undefined> {
    const head = await this.#head(key, signal)
    if (head === undefined) return undefined
    if (Date.now() - head.mtime > freshenAfterMs()) {
      try {
        await this.#copy('freshen', key, this.#key(key), signal, head.size, {
          'dreamdb-freshened': String(Date.now()),
        })
      } catch (error) {
        // Deleted since the HEAD (a GC): the caller writes it again.
        if (isNotFound(error)) return undefined
        throw error
      }
    }
    return head.size
  }

  /** Size and `LastModified` (ms) of an object, or `undefined` when it is absent. */
  async #head(key: string, signal?: AbortSignal): Promise<{ size: number; mtime: number } | undefined> {
    try {
      const response = await this.#send(
        'stat',
        key,
        'repeatable',
        (options) => this.#client.send(new HeadObjectCommand(this.#at(key)), options),
        signal,
      )
      return { size: response.ContentLength ?? 0, mtime: response.LastModified?.getTime() ?? 0 }
    } catch (error) {
      if (isNotFound(error)) return undefined
      throw error
    }
  }

  async replaceObject(key: string, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    // Unconditional: whoever else writes this key writes the same bytes.
    await this.#putObject('replace', key, bytes, undefined, 'repeatable', signal)
  }

  async stageObject(chunks: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<StagedObject> {
    const stagingKey = this.#key(`${STAGING}${randomUUID()}`)
    let size = 0
    async function* counted(): AsyncGenerator<Uint8Array> {
      for await (const chunk of chunks) {
        size += chunk.byteLength
        yield chunk
      }
    }
    const upload = new Upload({
      client: this.#uploadClient,
      params: { Bucket: this.#location.bucket, Key: stagingKey, Body: Readable.from(counted()) },
      partSize: MULTIPART_PART_BYTES,
      queueSize: 4,
      leavePartsOnError: false,
      ...(signal ? { abortController: linkedController(signal) } : {}),
    })
    try {
      await upload.done()
    } catch (error) {
      if (signal?.aborted) throw signal.reason
      const { timeoutMs, attempts } = this.#timeouts
      const request = { operation: 'put (staging)', target: stagingKey, store: this.description, timeoutMs }
      throw finalError(request, classifyFailure(error, false), attempts, error)
    }
    const copy = (key: string, publishSignal: AbortSignal | undefined) =>
      this.#copy('publish', key, stagingKey, publishSignal, size)
    return {
      size,
      publish: async (key, publishSignal) => {
        const existing = await this.#freshen(key, publishSignal)
        if (existing !== undefined) return { written: false, size: existing }
        if (size > MAX_COPY_BYTES) throw new ObjectTooLargeError(size, MAX_COPY_BYTES, this.description)
        await copy(key, publishSignal)
        return { written: true }
      },
      replace: async (key, publishSignal) => {
        if (size > MAX_COPY_BYTES) throw new ObjectTooLargeError(size, MAX_COPY_BYTES, this.description)
        await copy(key, publishSignal)
      },
      discard: () => this.#deleteQuietly(stagingKey),
    }
  }

  async *listObjects(prefix: string, signal?: AbortSignal): AsyncIterable<ListedKey> {
    for await (const object of this.#list(prefix, signal)) yield object
  }

  /**
   * With `modifiedBefore`, keys go in groups of 32: a HEAD of each (in parallel) keeps the ones
   * freshened since they were listed, then one DeleteObjects removes the rest of the group at
   * once, so a writer's freshen can fall between a key's HEAD and its delete only within one
   * group's round trip (design/0008). Without it, DeleteObjects of up to 1000 keys.
   */
  async deleteObjects(
    keys: readonly string[],
    modifiedBefore: number | undefined,
    signal?: AbortSignal,
  ): Promise<DeleteResult[]> {
    const results = new Map<string, DeleteResult>()
    const group = modifiedBefore === undefined ? DELETE_BATCH : CHECKED_DELETE_GROUP
    for (let start = 0; start < keys.length; start += group) {
      let doomed = keys.slice(start, start + group)
      if (modifiedBefore !== undefined) {
        const heads = await Promise.all(doomed.map((key) => this.#head(key, signal)))
        const old: string[] = []
        doomed.forEach((key, i) => {
          const head = heads[i]
          if (head === undefined) results.set(key, { key, deleted: false, reason: 'missing' })
          else if (head.mtime >= modifiedBefore) results.set(key, { key, deleted: false, reason: 'fresh' })
          else old.push(key)
        })
        doomed = old
      }
      if (doomed.length === 0) continue
      const batch = doomed
      const Delete = { Objects: batch.map((key) => ({ Key: this.#key(key) })), Quiet: true }
      const response = await this.#send(
        'delete',
        `${batch.length} objects`,
        'repeatable',
        (options) =>
          this.#client.send(new DeleteObjectsCommand({ Bucket: this.#location.bucket, Delete }), options),
        signal,
      )
      const failed = response.Errors?.[0]
      if (failed !== undefined) {
        throw Object.assign(
          new Error(`DeleteObjects refused ${failed.Key}: ${failed.Code} ${failed.Message}`),
          { name: failed.Code ?? 'DeleteObjectsError' },
        )
      }
      for (const key of batch) results.set(key, { key, deleted: true })
    }
    return keys.map((key) => results.get(key)!)
  }

  /** Staging objects (`tmp/`), probes (`_probe/`) and incomplete multipart uploads. */
  async *listLeftovers(signal?: AbortSignal): AsyncIterable<LeftoverEntry> {
    for await (const object of this.#list(STAGING, signal))
      yield { id: object.key, kind: 'staging', ...object }
    for await (const object of this.#list(PROBES, signal)) yield { id: object.key, kind: 'probe', ...object }
    // The SDK has no paginator for ListMultipartUploads (its two markers), so it is paged here.
    let KeyMarker: string | undefined
    let UploadIdMarker: string | undefined
    const strip = this.#location.prefix.length
    for (;;) {
      const markers = { ...(KeyMarker ? { KeyMarker } : {}), ...(UploadIdMarker ? { UploadIdMarker } : {}) }
      const command = new ListMultipartUploadsCommand({
        Bucket: this.#location.bucket,
        Prefix: this.#location.prefix,
        ...markers,
      })
      const page = await this.#send(
        'list',
        'incomplete uploads',
        'repeatable',
        (options) => this.#client.send(command, options),
        signal,
      )
      for (const u of page.Uploads ?? []) {
        if (u.Key === undefined || u.UploadId === undefined) continue
        yield {
          id: `upload:${u.Initiated?.getTime() ?? 0}:${u.UploadId}:${u.Key.slice(strip)}`,
          kind: 'upload',
          size: 0,
          mtime: u.Initiated?.getTime() ?? 0,
        }
      }
      if (!page.IsTruncated) return
      KeyMarker = page.NextKeyMarker
      UploadIdMarker = page.NextUploadIdMarker
      if (KeyMarker === undefined && UploadIdMarker === undefined) return
    }
  }

  async deleteLeftover(
    id: string,
    modifiedBefore: number | undefined,
    signal?: AbortSignal,
  ): Promise<boolean> {
    const upload = /^upload:(\d+):([^:]+):(.+)$/.exec(id)
    if (upload !== null) {
      // An upload's start time (in its id, from the listing) never changes.
      if (modifiedBefore !== undefined && Number(upload[1]) >= modifiedBefore) return false
      try {
        const command = new AbortMultipartUploadCommand({ ...this.#at(upload[3]!), UploadId: upload[2]! })
        await this.#send(
          'abort upload',
          upload[3]!,
          'repeatable',
          (options) => this.#client.send(command, options),
          signal,
        )
        return true
      } catch (error) {
        if (isNotFound(error) || errorName(error) === 'NoSuchUpload') return false
        throw error
      }
    }
    if (!id.startsWith(STAGING) && !id.startsWith(PROBES)) return false
    const [result] = await this.deleteObjects([id], modifiedBefore, signal)
    return result?.deleted === true
  }

  async readBlob(key: string, signal?: AbortSignal): Promise<VersionedBlob | undefined> {
    try {
      return await this.#request(
        'read',
        key,
        'repeatable',
        async (deadline) => {
          const response = await this.#getObject(key, deadline)
          const bytes = await readSmallBody(response.Body, response.ContentLength, deadline)
          if (response.ETag === undefined) throw new Error(`the server returned no ETag for ${key}`)
          return { bytes, token: response.ETag }
        },
        signal,
      )
    } catch (error) {
      if (isNotFound(error)) return undefined
      throw error
    }
  }

  writeBlob(
    key: string,
    bytes: Uint8Array,
    expectedToken: string | null,
    signal?: AbortSignal,
  ): Promise<ConditionalWriteResult> {
    return this.#conditionalPut(key, bytes, expectedToken, 'unapplied', signal)
  }

  async deleteBlob(
    key: string,
    expectedToken: string,
    signal?: AbortSignal,
  ): Promise<ConditionalWriteResult> {
    const current = await this.readBlob(key, signal)
    if (current === undefined) return { ok: false, reason: 'missing' }
    if (current.token !== expectedToken) return { ok: false, reason: 'changed' }
    try {
      const command = new DeleteObjectCommand({ ...this.#at(key), IfMatch: expectedToken })
      await this.#send('delete', key, 'unapplied', (options) => this.#client.send(command, options), signal)
      return { ok: true, token: expectedToken }
    } catch (error) {
      if (isPreconditionFailed(error) || isConditionalConflict(error)) return { ok: false, reason: 'changed' }
      if (isNotFound(error)) return { ok: false, reason: 'missing' }
      throw error
    }
  }

  async *listBlobs(prefix: string, signal?: AbortSignal): AsyncIterable<string> {
    for await (const { key } of this.#list(prefix, signal)) yield key
  }

  /**
   * Create a probe object twice with `If-None-Match: *` and replace it with a wrong
   * `If-Match`: a server that enforces conditional writes refuses both second writes.
   * Resending a probe write changes nothing the answer depends on, so a lost answer is
   * retried like a read; a probe object found already there (the creating write landed but
   * its answer was lost) counts as created when it holds this probe's own bytes.
   */
  async checkConditionalWrites(signal?: AbortSignal): Promise<void> {
    const key = `${PROBES}${randomUUID()}`
    const body = new TextEncoder().encode(`dreamdb conditional-write probe ${key}\n`)
    try {
      const created = await this.#conditionalPut(key, body, null, 'repeatable', signal)
      if (!created.ok) {
        const found = await this.readBlob(key, signal)
        if (found === undefined || Buffer.compare(found.bytes, body) !== 0)
          throw new Error(`probe key ${key} unexpectedly exists`)
      }
      const again = await this.#conditionalPut(key, body, null, 'repeatable', signal)
      if (again.ok) throw new ConditionalWritesUnsupportedError(this.#endpointName, 'If-None-Match')
      const wrongEtag = '"00000000000000000000000000000000"'
      const replaced = await this.#conditionalPut(key, body, wrongEtag, 'repeatable', signal)
      if (replaced.ok) throw new ConditionalWritesUnsupportedError(this.#endpointName, 'If-Match')
    } finally {
      await this.#deleteQuietly(this.#key(key))
    }
  }

  async close(): Promise<void> {
    if (this.#ownsClient) {
      this.#client.destroy()
      this.#uploadClient.destroy()
    }
  }

  /** PutObject of `bytes` at `key`, unconditional or under `If-None-Match: *` / `If-Match`. */
  #putObject(
    operation: string,
    key: string,
    bytes: Uint8Array,
    condition: { IfNoneMatch: '*' } | { IfMatch: string } | undefined,
    policy: RetryPolicy,
    signal: AbortSignal | undefined,
    payloadSha256?: string,
  ) {
    const command = new PutObjectCommand({
      ...this.#at(key),
      Body: bytes,
      ContentLength: bytes.byteLength,
      ...condition,
    })
    if (payloadSha256 !== undefined) {
      // SigV4 signs the payload's SHA-256, which the SDK would compute again on the main
      // thread (~0.7 ms a MiB) for bytes the caller has just hashed; given as the header, the
      // signer takes it as is and the server still hashes what it receives and refuses a
      // mismatch (XAmzContentSHA256Mismatch), so a wrong digest fails the put, never stores.
      command.middlewareStack.add(
        (next) => async (args) => {
          const request = args.request as { headers?: Record<string, string> }
          if (request.headers !== undefined) request.headers['x-amz-content-sha256'] = payloadSha256
          return await next(args)
        },
        { step: 'build', name: 'dreamdbKnownPayloadSha256' },
      )
    }
    return this.#send(
      operation,
      key,
      policy,
      (options) => this.#client.send(command, options),
      signal,
      bytes.byteLength,
    )
  }

  async #conditionalPut(
    key: string,
    bytes: Uint8Array,
    expectedToken: string | null,
    policy: RetryPolicy,
    signal?: AbortSignal,
    payloadSha256?: string,
  ): Promise<ConditionalWriteResult> {
    const create = expectedToken === null
    const condition = create ? { IfNoneMatch: '*' as const } : { IfMatch: expectedToken }
    try {
      const response = await retry(
        () =>
          this.#putObject(create ? 'create' : 'update', key, bytes, condition, policy, signal, payloadSha256),
        {
          // 409: another conditional write to this key is in flight; AWS asks us to retry.
          attempts: MAX_CONFLICT_RETRIES + 1,
          retryable: isConditionalConflict,
          backoff: { minMs: 10, maxMs: 1_000 },
          signal,
        },
      )
      return { ok: true, token: response.ETag ?? '' }
    } catch (error) {
      if (isPreconditionFailed(error)) return { ok: false, reason: create ? 'exists' : 'changed' }
      if (!create && isNotFound(error)) return { ok: false, reason: 'missing' }
      throw error
    }
  }

  async *#list(prefix: string, signal?: AbortSignal): AsyncIterable<ListedKey> {
    const strip = this.#location.prefix.length
    // The SDK's paginator, on a view of the client whose `send` runs each page as every other
    // request runs (a deadline, retries, typed errors): the paginator takes only an S3Client.
    const send = (command: ListObjectsV2Command) =>
      this.#send(
        'list',
        `keys under '${prefix}'`,
        'repeatable',
        (options) => this.#client.send(command, options),
        signal,
      )
    const client = Object.create(this.#client, { send: { value: send } }) as S3Client
    const pages = paginateListObjectsV2(
      { client, stopOnSameToken: true },
      { Bucket: this.#location.bucket, Prefix: this.#key(prefix) },
    )
    for await (const page of pages) {
      for (const object of page.Contents ?? []) {
        if (object.Key !== undefined)
          yield {
            key: object.Key.slice(strip),
            size: object.Size ?? 0,
            mtime: object.LastModified?.getTime() ?? 0,
          }
      }
    }
  }
}

/** An AbortController that aborts when `signal` does (lib-storage wants a controller). */
function linkedController(signal: AbortSignal): AbortController {
  const controller = new AbortController()
  if (signal.aborted) controller.abort(signal.reason)
  else signal.addEventListener('abort', () => controller.abort(signal.reason), { once: true })
  return controller
}
