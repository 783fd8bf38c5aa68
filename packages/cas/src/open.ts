import type { S3Client } from '@aws-sdk/client-s3'
import { ContentStore } from './content-store.js'
import type { AbortOptions, Store } from './interface.js'
import { type BackendLocation, parseBackendUrl } from './url.js'

export interface OpenStoreOptions extends AbortOptions {
  /** Resolve relative folder paths against this. @default process.cwd() */
  cwd?: string
  /** S3 only: create the bucket if it does not exist. @default false */
  createBucket?: boolean
  /** S3 only: a client to use instead of one built from the standard AWS configuration. */
  s3Client?: S3Client
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
 * SDK is loaded only when an S3 URL is opened.
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
      const { S3Backend } = await import('./backends/s3.js')
      return await S3Backend.open(
        location,
        {
          ...(options.s3Client ? { client: options.s3Client } : {}),
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
