/**
 * The viewer's HTTP server (node:http): the app's page and script, and the read-only JSON
 * API under /api/. Loopback only unless the caller explicitly allows another address;
 * requests naming another host are refused (a page elsewhere cannot reach it through DNS
 * rebinding). Each request gets an AbortSignal that fires when its client goes away or the
 * server stops.
 */
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { isIP } from 'node:net'
import { fileURLToPath } from 'node:url'
import type { Store } from '@dreamdb/cas'
import type { Repository } from '@dreamdb/manifest'
import { CliError, classify, EXIT, UsageError } from '../errors.js'
import { toJson } from '../io.js'
import { createApi, type Reply, RouteNotFoundError } from './api.js'
import { PAGE } from './page.js'

/** A bind address or Host header that is not this machine, refused unless asked for. */
export class NotLoopbackError extends CliError {
  static readonly code = 'ERR_CLI_UI_NOT_LOOPBACK'
  override readonly name = 'NotLoopbackError'
  readonly code = NotLoopbackError.code
}

/** Whether an address or host name is this machine's loopback. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[(.*)\]$/, '$1').toLowerCase()
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true
  return isIP(h) === 4 && h.startsWith('127.')
}

export interface ViewerOptions {
  repo: Repository
  store: Store
  /** @default '127.0.0.1' */
  host?: string
  /** 0 picks a free port. @default 0 */
  port?: number
  /** Bind a non-loopback address (the command asks for it only when --host is given). */
  allowRemote?: boolean
  signal: AbortSignal
}

export interface Viewer {
  url: string
  host: string
  port: number
  close(): Promise<void>
}

/** The built browser script: next to the bundled CLI, or in dist/ when running the sources. */
function findAppScript(): string | undefined {
  for (const candidate of ['./ui/app.js', '../../dist/ui/app.js']) {
    const path = fileURLToPath(new URL(candidate, import.meta.url))
    if (existsSync(path)) return path
  }
  return undefined
}

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  // Nothing from elsewhere: the app, its data and its images all come from this server.
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}

/** HTTP status of an error, from the CLI's exit code for it. */
function statusOf(code: string, exitCode: number): number {
  if (code === RouteNotFoundError.code || code === 'ERR_CLI_UI_NO_SUCH_RECORD') return 404
  if (code === NotLoopbackError.code) return 403
  switch (exitCode) {
    case EXIT.usage:
    case EXIT.user:
      return 400
    case EXIT.notFound:
      return 404
    case EXIT.conflict:
      return 409
    case EXIT.unavailable:
      return 503
    default:
      return 500
  }
}

function send(
  res: ServerResponse,
  status: number,
  type: string,
  body: string | Uint8Array,
  extra: Record<string, string> = {},
) {
  res.writeHead(status, {
    ...SECURITY_HEADERS,
    'content-type': type,
    'content-length': String(typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength),
    ...extra,
  })
  res.end(body)
}

/** The error document the CLI prints under --json, with the same code, hint and exit code. */
export function errorDocument(error: unknown): { status: number; body: string } {
  const { code, message, hint, exitCode } = classify(error)
  return {
    status: statusOf(code, exitCode),
    body: toJson({
      format: 'dreamdb.error/1',
      error: { code, message, ...(hint ? { hint } : {}), exitCode },
    }),
  }
}

export async function startViewer(options: ViewerOptions): Promise<Viewer> {
  const host = options.host ?? '127.0.0.1'
  if (!isLoopback(host) && !options.allowRemote) {
    throw new NotLoopbackError(
      `the viewer binds loopback addresses only, not ${host}`,
      'it serves the whole store without authentication; pass --host explicitly to expose it anyway',
    )
  }
  const api = createApi({ repo: options.repo, store: options.store })
  const appScript = findAppScript()
  const stopping = new AbortController()

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // Aborted when the client disconnects before the answer is sent, or the server stops.
    const request = new AbortController()
    res.on('close', () => {
      if (!res.writableFinished) request.abort(new DOMException('the client went away', 'AbortError'))
    })
    const signal = AbortSignal.any([request.signal, stopping.signal, options.signal])
    try {
      // Only a path is a request for this server: '//x' resolved against a base is a URL of
      // host x (and '//' no URL at all), so the path is appended to the base, not resolved.
      const target = req.url ?? '/'
      if (!target.startsWith('/')) throw new RouteNotFoundError(`no such page or API: ${target}`)
      const url = new URL(`http://viewer.invalid${target}`)
      const hostHeader = (req.headers.host ?? '').replace(/:\d+$/, '')
      if (isLoopback(host) && !isLoopback(hostHeader)) {
        throw new NotLoopbackError(
          `requests must name this machine (127.0.0.1 or localhost), not '${hostHeader}'`,
        )
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        throw new UsageError(`the viewer is read-only: ${req.method} is not served`)
      }
      if (url.pathname === '/' || url.pathname === '/index.html') {
        return send(res, 200, 'text/html; charset=utf-8', PAGE, { 'cache-control': 'no-cache' })
      }
      if (url.pathname === '/app.js') {
        if (appScript === undefined)
          throw new RouteNotFoundError('the viewer app is not built', 'pnpm --filter @dreamdb/cli build')
        return send(res, 200, 'text/javascript; charset=utf-8', await readFile(appScript), {
          'cache-control': 'no-cache',
        })
      }
      const match = /^\/api\/([a-z]+)$/.exec(url.pathname)
      const handler = match ? api.get(match[1]!) : undefined
      if (handler === undefined) throw new RouteNotFoundError(`no such page or API: ${url.pathname}`)
      const reply: Reply = await handler(url.searchParams, signal)
      const cache = { 'cache-control': reply.immutable ? 'public, max-age=31536000, immutable' : 'no-cache' }
      if ('json' in reply) return send(res, 200, 'application/json; charset=utf-8', toJson(reply.json), cache)
      if (reply.etag !== undefined && req.headers['if-none-match'] === reply.etag) {
        res.writeHead(304, { ...SECURITY_HEADERS, ...cache, etag: reply.etag })
        res.end()
        return
      }
      return send(res, 200, reply.type, reply.bytes, {
        ...cache,
        ...(reply.etag === undefined ? {} : { etag: reply.etag }),
      })
    } catch (error) {
      if (signal.aborted || res.headersSent) {
        if (!res.writableEnded) res.destroy()
        return
      }
      const { status, body } = errorDocument(error)
      send(res, status, 'application/json; charset=utf-8', body)
    }
  }

  const server = createServer((req, res) => {
    void handle(req, res)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address
  let closed: Promise<void> | undefined
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((resolve) => {
      stopping.abort()
      server.close(() => resolve())
      server.closeAllConnections()
    })
    return closed
  }
  options.signal.addEventListener('abort', () => void close(), { once: true })
  return { url: `http://${shown}:${address.port}/`, host: address.address, port: address.port, close }
}
