import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'

/** What the proxy knows of a request when it decides whether to drop its response. */
export interface ProxiedRequest {
  method: string
  /** The path and query, as sent (`/bucket/refs/main.ref`). */
  path: string
  headers: IncomingMessage['headers']
}

export interface FaultProxyOptions {
  /** The real server, e.g. `http://127.0.0.1:9000` (no path). */
  target: string
  /**
   * Whether to lose the response of this request: the proxy forwards it, waits until the
   * server has answered in full (so the server has applied it), then resets the client's
   * connection instead of passing the answer on. Called once per request.
   */
  dropResponseOf?: (request: ProxiedRequest) => boolean
  /**
   * Awaited after the server answered a request whose response is being dropped, before the
   * client's connection is reset: the place to let another writer act "meanwhile".
   */
  beforeReset?: (request: ProxiedRequest, status: number) => Promise<void> | void
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`: use it in place of the target's endpoint. */
  url: string
  /** Requests forwarded so far (dropped ones included). */
  readonly forwarded: number
  /** Responses the server gave that the client never saw, in order. */
  readonly dropped: (ProxiedRequest & { status: number })[]
  close(): Promise<void>
}

/**
 * A fault-injecting HTTP proxy on 127.0.0.1 in front of a real server (MinIO in the tests).
 * Requests pass through unchanged, Host header included, so S3 signatures still verify.
 * For each request `dropResponseOf` picks, the server applies the request and answers, and
 * the client sees its connection reset: the "write landed but the response was lost" fault.
 * No S3 behaviour is mocked; everything the client sees otherwise comes from the server.
 *
 * @example
 * ```ts
 * const proxy = await startFaultProxy({
 *   target: endpoint,
 *   dropResponseOf: (r) => r.method === 'PUT' && r.path.includes('/refs/'),
 * })
 * const store = await openStore(`${proxy.url}/${bucket}`)
 * ```
 */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const target = new URL(options.target)
  const sockets = new Set<Socket>()
  const dropped: (ProxiedRequest & { status: number })[] = []
  let forwarded = 0
  const server: Server = createServer((req, res) => {
    const info: ProxiedRequest = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers }
    const drop = options.dropResponseOf?.(info) ?? false
    forwarded++
    const upstream = httpRequest(
      {
        host: target.hostname,
        port: target.port,
        method: info.method,
        path: info.path,
        headers: req.headers,
      },
      (answer) => {
        if (!drop) {
          res.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.pipe(res)
          return
        }
        // Read the whole answer (the server has applied the request by now), then reset.
        answer.resume()
        answer.on('end', () => {
          const status = answer.statusCode ?? 0
          dropped.push({ ...info, status })
          void Promise.resolve(options.beforeReset?.(info, status))
            .catch(() => {})
            .finally(() => req.socket.resetAndDestroy())
        })
      },
    )
    upstream.on('error', () => req.socket.resetAndDestroy())
    req.pipe(upstream)
  })
  server.on('connection', (socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    get forwarded() {
      return forwarded
    },
    dropped,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      }),
  }
}

/**
 * An S3 client for a test server or a proxy in front of it, with the SDK's retries set by
 * `maxAttempts` (1: a lost answer reaches the caller as an error instead of being retried).
 */
export async function s3ClientFor(endpoint: string, init: { maxAttempts?: number } = {}) {
  const { S3Client } = await import('@aws-sdk/client-s3')
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...init,
  })
}
