import type { S3Client } from '@aws-sdk/client-s3'
import { ContentStore } from './content-store.js'
import { S3SupportMissingError } from './errors.js'
import type { AbortOptions, Store } from './interface.js'
import { type BackendLocation, parseBackendUrl } from './url.js'

/** What `openStore` needs of a caller's `S3Client` (any `@aws-sdk/client-s3` 3.x client fits). */
export interface S3ClientLike {
  send(command: never, options?: never): Promise<unknown>
  destroy(): void
}

/** The optional peers that S3 backends import (see `S3SupportMissingError`). */
const S3_PACKAGES = ['@aws-sdk/client-s3', '@aws-sdk/lib-storage', '@smithy/node-http-handler'] as const

export interface OpenStoreOptions extends AbortOptions {
  /** Resolve relative folder paths against this. @default process.cwd() */
  cwd?: string
  /** S3 only: create the bucket if it does not exist. @default false */
  createBucket?: boolean
  /**
   * S3 only: an `S3Client` of `@aws-sdk/client-s3` to use instead of one built from the
   * standard AWS configuration. Typed by the calls the store makes so that these
   * declarations compile without the SDK, an optional peer.
   */
  s3Client?: S3ClientLike
  /** S3 only: sockets per host. @default 64 */
  maxSockets?: number
  /**
   * Hash objects of 1 MiB and more on worker threads (one per core, up to four), beside the
   * caller's work; on a folder the threads read them too. @default true with more than one core
   */
  readThreads?: boolean
  /**
   * S3 only: how long the server may stay silent in one request (no answer yet, or no body
   * byte) before the attempt fails. @default `DREAMDB_S3_TIMEOUT_MS`, else 30000
   */
  timeoutMs?: number
  /** S3 only: how long opening a connection may take. @default `DREAMDB_S3_CONNECT_TIMEOUT_MS`, else 10000 */
  connectTimeoutMs?: number
  /**
   * S3 only: attempts of a read or an object put before it fails with `StoreTimeoutError` or
   * `StoreUnreachableError` (1: no retry). A ref write is sent again only when no attempt
   * reached the server. @default `DREAMDB_S3_ATTEMPTS`, else 3
   */
  attempts?: number
}

/**
 * Open a store from a backend URL (see `parseBackendUrl`). Opening costs at most one
 * request: a HeadBucket on S3, which also checks the bucket and the credentials. The S3
 * SDK is loaded only when an S3 URL is opened, and need not be installed otherwise (without
 * it, opening one throws `S3SupportMissingError`).
 *
 * @example
 * ```ts
 * const store = await openStore('./.dreamdb')            // a folder, the embedded default
 * const remote = await openStore('http://127.0.0.1:9000/datasets')
 * ```
 */
export async function openStore(url: string, options: OpenStoreOptions = {}): Promise<Store> {
  const location = parseBackendUrl(url, options.cwd)
  options.signal?.throwIfAborted()
  return new ContentStore(await openBackend(location, options))
}

async function openBackend(location: BackendLocation, options: OpenStoreOptions) {
  switch (location.kind) {
    case 'memory': {
      const { MemoryBackend } = await import('./backends/memory.js')
      return new MemoryBackend(location.name)
    }
    case 'fs': {
      const { FsBackend } = await import('./backends/fs.js')
      return new FsBackend(location.root, {
        ...(options.readThreads !== undefined ? { readThreads: options.readThreads } : {}),
      })
    }
    case 's3': {
      const { S3Backend } = await importS3Backend()
      return await S3Backend.open(
        location,
        {
          // A real S3Client (the only kind S3ClientLike is documented to take).
          ...(options.s3Client ? { client: options.s3Client as S3Client } : {}),
          ...(options.createBucket !== undefined ? { createBucket: options.createBucket } : {}),
          ...(options.maxSockets !== undefined ? { maxSockets: options.maxSockets } : {}),
          ...(options.readThreads !== undefined ? { readThreads: options.readThreads } : {}),
          timeouts: {
            ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
            ...(options.connectTimeoutMs !== undefined ? { connectTimeoutMs: options.connectTimeoutMs } : {}),
            ...(options.attempts !== undefined ? { attempts: options.attempts } : {}),
          },
        },
        options.signal,
      )
    }
  }
}

async function importS3Backend(): Promise<typeof import('./backends/s3.js')> {
  try {
    return await import('./backends/s3.js')
  } catch (error) {
    throw s3SdkMissing(error) ?? error
  }
}

/**
 * The typed error for a failed import of the S3 backend when Node could not find one of the
 * SDK's packages (`ERR_MODULE_NOT_FOUND`, "Cannot find package 'name' imported from ..."),
 * else `undefined`: any other failure is not about a missing install. Exported for tests.
 */
export function s3SdkMissing(error: unknown): S3SupportMissingError | undefined {
  if ((error as NodeJS.ErrnoException | undefined)?.code !== 'ERR_MODULE_NOT_FOUND') return undefined
  const name = /Cannot find (?:package|module) '((?:@[^/']+\/)?[^/']+)/.exec((error as Error).message)?.[1]
  // The SDK's own packages, direct or one of theirs (a partial install).
  if (name === undefined || !/^@(aws-sdk|smithy|aws-crypto)\//.test(name)) return undefined
  return new S3SupportMissingError(name, S3_PACKAGES, { cause: error })
}
