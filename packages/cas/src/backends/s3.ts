import { randomUUID } from 'node:crypto'
import { Agent as HttpAgent } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import { availableParallelism } from 'node:os'
import { Readable } from 'node:stream'
import {
  CopyObjectCommand,
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
} from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { NodeHttpHandler } from '@smithy/node-http-handler'
import { sleep } from '../concurrency.js'
import {
  AccessDeniedError,
  BucketNotFoundError,
  ConditionalWritesUnsupportedError,
  ObjectTooLargeError,
} from '../errors.js'
import type { ReadSink } from '../hashing.js'
import { PROBES, STAGING } from '../layout.js'
import type { Backend, ConditionalWriteResult, StagedObject, VersionedBlob } from './backend.js'
import { NotFoundSignal } from './backend.js'
import { type ReadThreads, sharedReadThreads, THREAD_READ_MIN_BYTES } from './read-threads.js'

/** Above this, a put asks whether the object exists before sending its bytes. */
const HEAD_FIRST_BYTES = 1 << 20
/** The largest object a single CopyObject can publish. */
const MAX_COPY_BYTES = 5 * 1024 ** 3
const MULTIPART_PART_BYTES = 8 << 20
const MAX_CONFLICT_RETRIES = 6

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

/** Build the SDK client: path-style addressing, pooled keep-alive sockets, default credentials. */
export function createS3Client(location: S3Location, maxSockets = 64): S3Client {
  const config: S3ClientConfig = {
    forcePathStyle: true,
    // DreamDB hashes every object itself; SDK checksums would only add work and break
    // servers that reject the newer checksum headers.
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    requestHandler: new NodeHttpHandler({
      httpAgent: new HttpAgent({ keepAlive: true, maxSockets }),
      httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets }),
      connectionTimeout: 10_000,
    }),
  }
  if (location.endpoint !== undefined) {
    config.endpoint = location.endpoint
    // Self-hosted servers rarely care about the region, but SigV4 needs one.
    config.region = process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1'
  }
  return new S3Client(config)
}

/** Copy a response body into `sink`, reporting progress as chunks land. */
async function readBody(body: unknown, expectedLength: number | undefined, sink: ReadSink): Promise<void> {
  const stream = body as Readable
  if (expectedLength === undefined) {
    const parts: Buffer[] = []
    for await (const chunk of stream) parts.push(chunk as Buffer)
    const all = Buffer.concat(parts)
    sink.buffer(all.byteLength).set(all)
    sink.wrote(all.byteLength)
    return
  }
  const bytes = sink.buffer(expectedLength)
  let offset = 0
  for await (const chunk of stream) {
    const piece = chunk as Buffer
    if (offset + piece.byteLength > expectedLength)
      throw new Error('response body longer than Content-Length')
    bytes.set(piece, offset)
    offset += piece.byteLength
    sink.wrote(offset)
  }
  if (offset !== expectedLength)
    throw new Error(`response body ended after ${offset} of ${expectedLength} bytes`)
}

/** A whole small body (refs, ranges) as plain bytes. */
async function readSmallBody(body: unknown, expectedLength: number | undefined): Promise<Uint8Array> {
  let bytes = new Uint8Array(0)
  await readBody(body, expectedLength, { buffer: (size) => (bytes = new Uint8Array(size)), wrote: () => {} })
  return bytes
}

/**
 * Any S3-compatible server. Objects are written with `If-None-Match: *` (a 412 means the
 * object is already there), refs with `If-None-Match: *` to create and `If-Match: <etag>`
 * to update, so the server arbitrates every race. Before the first ref write the store
 * proves the server enforces both headers.
 *
 * @internal
 */
export class S3Backend implements Backend {
  readonly description: string
  readonly #client: S3Client
  readonly #ownsClient: boolean
  readonly #location: S3Location
  /** Where large bodies are hashed; `undefined` hashes them as they arrive, on this thread. */
  readonly #threads: ReadThreads | undefined

  private constructor(location: S3Location, client: S3Client, ownsClient: boolean, readThreads: boolean) {
    this.#location = location
    this.#client = client
    this.#ownsClient = ownsClient
    this.#threads = readThreads ? sharedReadThreads() : undefined
    const where = location.endpoint ?? 's3:/'
    this.description = `${where}/${location.bucket}${location.prefix === '' ? '' : `/${location.prefix.slice(0, -1)}`}`
  }

  /** Open the bucket: one HeadBucket, which also proves the credentials work. */
  static async open(
    location: S3Location,
    init: S3BackendInit = {},
    signal?: AbortSignal,
  ): Promise<S3Backend> {
    const client = init.client ?? createS3Client(location, init.maxSockets)
    const backend = new S3Backend(
      location,
      client,
      init.client === undefined,
      init.readThreads ?? availableParallelism() > 1,
    )
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

  async #ensureBucket(create: boolean, signal?: AbortSignal): Promise<void> {
    const Bucket = this.#location.bucket
    try {
      await this.#client.send(new HeadBucketCommand({ Bucket }), withSignal(signal))
      return
    } catch (error) {
      if (status(error) === 403 || status(error) === 401) {
        throw new AccessDeniedError(Bucket, this.#endpointName, { cause: error })
      }
      if (!isNotFound(error)) throw error
      if (!create) throw new BucketNotFoundError(Bucket, this.#endpointName, { cause: error })
    }
    try {
      await this.#client.send(new CreateBucketCommand({ Bucket }), withSignal(signal))
    } catch (error) {
      const name = errorName(error)
      if (name !== 'BucketAlreadyOwnedByYou' && name !== 'BucketAlreadyExists') throw error
    }
  }

  #key(key: string): string {
    return `${this.#location.prefix}${key}`
  }

  async readObject(key: string, sink: ReadSink, signal?: AbortSignal): Promise<boolean> {
    let response: GetObjectCommandOutput
    try {
      response = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#location.bucket, Key: this.#key(key) }),
        withSignal(signal),
      )
    } catch (error) {
      if (isNotFound(error)) return false
      throw error
    }
    const size = response.ContentLength
    if (size !== undefined && size >= THREAD_READ_MIN_BYTES && sink.hashed !== undefined && this.#threads) {
      // Received here, hashed on a read thread while this thread receives the next body.
      const bytes = Buffer.allocUnsafeSlow(size)
      await readBody(response.Body, size, { buffer: () => bytes, wrote: () => {} })
      const { bytes: hashed, digest } = await this.#threads.hash(bytes.buffer)
      sink.hashed(hashed, digest)
      return true
    }
    await readBody(response.Body, size, sink)
    return true
  }

  async *streamObject(key: string, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    let body: Readable
    try {
      const response = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#location.bucket, Key: this.#key(key) }),
        withSignal(signal),
      )
      body = response.Body as Readable
    } catch (error) {
      if (isNotFound(error)) throw new NotFoundSignal(key)
      throw error
    }
    try {
      for await (const chunk of body) yield chunk as Buffer
    } finally {
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
      const response = await this.#client.send(
        new GetObjectCommand({
          Bucket: this.#location.bucket,
          Key: this.#key(key),
          Range: `bytes=${offset}-${offset + length - 1}`,
        }),
        withSignal(signal),
      )
      const total = Number(/\/(\d+)$/.exec(response.ContentRange ?? '')?.[1])
      const bytes = await readSmallBody(response.Body, response.ContentLength)
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
    try {
      const response = await this.#client.send(
        new HeadObjectCommand({ Bucket: this.#location.bucket, Key: this.#key(key) }),
        withSignal(signal),
      )
      return response.ContentLength ?? 0
    } catch (error) {
      if (isNotFound(error)) return undefined
      throw error
    }
  }

  async writeObjectIfAbsent(key: string, bytes: Uint8Array, signal?: AbortSignal): Promise<boolean> {
    if (bytes.byteLength >= HEAD_FIRST_BYTES && (await this.objectSize(key, signal)) !== undefined)
      return false
    const result = await this.#conditionalPut(key, bytes, null, signal)
    return result.ok
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
      client: this.#client,
      params: { Bucket: this.#location.bucket, Key: stagingKey, Body: Readable.from(counted()) },
      partSize: MULTIPART_PART_BYTES,
      queueSize: 4,
      leavePartsOnError: false,
      ...(signal ? { abortController: linkedController(signal) } : {}),
    })
    await upload.done()
    const discard = async (): Promise<void> => {
      await this.#client
        .send(new DeleteObjectCommand({ Bucket: this.#location.bucket, Key: stagingKey }))
        .catch(() => {})
    }
    return {
      size,
      publish: async (key, publishSignal) => {
        try {
          if ((await this.objectSize(key, publishSignal)) !== undefined) return { stored: false }
          if (size > MAX_COPY_BYTES) throw new ObjectTooLargeError(size, MAX_COPY_BYTES, this.description)
          await this.#client.send(
            new CopyObjectCommand({
              Bucket: this.#location.bucket,
              Key: this.#key(key),
              CopySource: `${this.#location.bucket}/${encodeURI(stagingKey)}`,
            }),
            withSignal(publishSignal),
          )
          return { stored: true }
        } finally {
          await discard()
        }
      },
      discard,
    }
  }

  async *listObjects(prefix: string, signal?: AbortSignal): AsyncIterable<{ key: string; size: number }> {
    for await (const object of this.#list(prefix, signal)) yield object
  }

  async readBlob(key: string, signal?: AbortSignal): Promise<VersionedBlob | undefined> {
    try {
      const response = await this.#client.send(
        new GetObjectCommand({ Bucket: this.#location.bucket, Key: this.#key(key) }),
        withSignal(signal),
      )
      const bytes = await readSmallBody(response.Body, response.ContentLength)
      if (response.ETag === undefined) throw new Error(`the server returned no ETag for ${key}`)
      return { bytes, token: response.ETag }
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
    return this.#conditionalPut(key, bytes, expectedToken, signal)
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
      await this.#client.send(
        new DeleteObjectCommand({
          Bucket: this.#location.bucket,
          Key: this.#key(key),
          IfMatch: expectedToken,
        }),
        withSignal(signal),
      )
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
   */
  async checkConditionalWrites(signal?: AbortSignal): Promise<void> {
    const key = `${PROBES}${randomUUID()}`
    const body = new TextEncoder().encode('dreamdb conditional-write probe\n')
    try {
      const created = await this.#conditionalPut(key, body, null, signal)
      if (!created.ok) throw new Error(`probe key ${key} unexpectedly exists`)
      const again = await this.#conditionalPut(key, body, null, signal)
      if (again.ok) throw new ConditionalWritesUnsupportedError(this.#endpointName, 'If-None-Match')
      const wrongEtag = '"00000000000000000000000000000000"'
      const replaced = await this.#conditionalPut(key, body, wrongEtag, signal)
      if (replaced.ok) throw new ConditionalWritesUnsupportedError(this.#endpointName, 'If-Match')
    } finally {
      await this.#client
        .send(new DeleteObjectCommand({ Bucket: this.#location.bucket, Key: this.#key(key) }))
        .catch(() => {})
    }
  }

  async close(): Promise<void> {
    if (this.#ownsClient) this.#client.destroy()
  }

  async #conditionalPut(
    key: string,
    bytes: Uint8Array,
    expectedToken: string | null,
    signal?: AbortSignal,
  ): Promise<ConditionalWriteResult> {
    for (let attempt = 0; ; attempt++) {
      try {
        const response = await this.#client.send(
          new PutObjectCommand({
            Bucket: this.#location.bucket,
            Key: this.#key(key),
            Body: bytes,
            ContentLength: bytes.byteLength,
            ...(expectedToken === null ? { IfNoneMatch: '*' } : { IfMatch: expectedToken }),
          }),
          withSignal(signal),
        )
        return { ok: true, token: response.ETag ?? '' }
      } catch (error) {
        if (isPreconditionFailed(error))
          return { ok: false, reason: expectedToken === null ? 'exists' : 'changed' }
        if (expectedToken !== null && isNotFound(error)) return { ok: false, reason: 'missing' }
        // 409: another conditional write to this key is in flight; AWS asks us to retry.
        if (isConditionalConflict(error) && attempt < MAX_CONFLICT_RETRIES) {
          await sleep(Math.random() * 20 * 2 ** attempt, signal)
          continue
        }
        throw error
      }
    }
  }

  async *#list(prefix: string, signal?: AbortSignal): AsyncIterable<{ key: string; size: number }> {
    const strip = this.#location.prefix.length
    let ContinuationToken: string | undefined
    do {
      const page = await this.#client.send(
        new ListObjectsV2Command({
          Bucket: this.#location.bucket,
          Prefix: this.#key(prefix),
          ...(ContinuationToken ? { ContinuationToken } : {}),
        }),
        withSignal(signal),
      )
      for (const object of page.Contents ?? []) {
        if (object.Key !== undefined) yield { key: object.Key.slice(strip), size: object.Size ?? 0 }
      }
      ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (ContinuationToken !== undefined)
  }
}

/** SDK call options carrying the signal, if any. */
function withSignal(signal: AbortSignal | undefined): { abortSignal?: AbortSignal } {
  return signal === undefined ? {} : { abortSignal: signal }
}

/** An AbortController that aborts when `signal` does (lib-storage wants a controller). */
function linkedController(signal: AbortSignal): AbortController {
  const controller = new AbortController()
  if (signal.aborted) controller.abort(signal.reason)
  else signal.addEventListener('abort', () => controller.abort(signal.reason), { once: true })
  return controller
}
