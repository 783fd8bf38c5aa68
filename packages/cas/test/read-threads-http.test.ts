/**
 * The read threads' own HTTP/1.1 GET (read-worker.js `plainGet`), against a tiny local
 * server that misbehaves on purpose: what MinIO never does in the conformance suite.
 */
import { createHash } from 'node:crypto'
import { createServer, type Server, type Socket } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ReadThreads } from '../src/backends/read-threads.js'

const BODY = Buffer.alloc(300_000, 7)
let server: Server
let port = 0
/** Connections the server accepted, to see reuse. */
let accepted = 0

/** Sockets whose next request is dropped unanswered (a server closing an idle connection as it arrives). */
const dropNext = new WeakSet<Socket>()

/** Answers by path: each request's head is read, then the socket is handled as the path says. */
function handle(socket: Socket, path: string): void {
  if (dropNext.has(socket)) {
    socket.destroy()
    return
  }
  const head = (status: string, length: number, extra = '') =>
    `HTTP/1.1 ${status}\r\ncontent-length: ${length}\r\n${extra}\r\n`
  if (path === '/ok') socket.write(head('200 OK', BODY.length) + BODY.toString('latin1'), 'latin1')
  else if (path === '/ok-then-drop') {
    // Answers and keeps the connection, but drops it when the next request comes.
    socket.write(head('200 OK', BODY.length) + BODY.toString('latin1'), 'latin1')
    dropNext.add(socket)
  } else if (path === '/missing') {
    const xml = '<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>'
    socket.write(head('404 Not Found', xml.length) + xml)
  } else if (path === '/ok-then-junk') {
    // The answer, then bytes nobody asked for (a stale answer) on the kept-alive connection.
    const stale = head('404 Not Found', 0)
    socket.write(head('200 OK', BODY.length) + BODY.toString('latin1') + stale, 'latin1')
  } else if (path === '/chunked-503') {
    const xml = '<Error><Code>SlowDown</Code><Message>reduce your rate</Message></Error>'
    socket.write(
      `HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n${xml.length.toString(16)}\r\n${xml}\r\n0\r\n\r\n`,
    )
  } else if (path === '/chunked') {
    const body = BODY.subarray(0, 1000).toString('latin1')
    socket.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3e8\r\n${body}\r\n0\r\n\r\n`, 'latin1')
  } else if (path === '/short') socket.end(`${head('200 OK', BODY.length)}abc`)
  // '/silent': never answers.
}

beforeAll(async () => {
  server = createServer((socket) => {
    accepted++
    let pending = ''
    socket.on('data', (chunk) => {
      pending += chunk.toString('latin1')
      for (let end = pending.indexOf('\r\n\r\n'); end >= 0; end = pending.indexOf('\r\n\r\n')) {
        const path = pending.slice(4, pending.indexOf(' ', 4))
        pending = pending.slice(end + 4)
        handle(socket, path)
      }
    })
    socket.on('error', () => {})
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as { port: number }).port
})
afterAll(() => server.close())

describe('read threads: plain HTTP GET', { timeout: 10_000 }, () => {
  const threads = new ReadThreads(1)
  const get = (path: string, timeoutMs = 2_000) =>
    threads.get({
      url: `http://127.0.0.1:${port}${path}`,
      headers: { host: `127.0.0.1:${port}` },
      timeoutMs,
      connectTimeoutMs: 2_000,
    })

  it('receives a body whole with its digest, and reuses the connection', async () => {
    const before = accepted
    for (let i = 0; i < 3; i++) {
      const reply = await get('/ok')
      expect(reply.status).toBe(200)
      expect(Buffer.from(reply.bytes!).equals(BODY)).toBe(true)
      expect(Buffer.from(reply.digest!).toString('hex')).toBe(createHash('sha256').update(BODY).digest('hex'))
    }
    expect(accepted - before).toBe(1)
  })

  it('an error answer comes back as its status and body', async () => {
    const reply = await get('/missing')
    expect(reply).toMatchObject({ status: 404 })
    expect(reply.body).toContain('<Code>NoSuchKey</Code>')
  })

  it('a kept-alive connection the server dropped is replaced without an error', async () => {
    const before = accepted
    expect((await get('/ok-then-drop')).status).toBe(200)
    expect((await get('/ok')).status).toBe(200)
    expect(accepted - before).toBe(2)
  })

  it('a connection that receives bytes nobody asked for is not reused (they are no answer to the next request)', async () => {
    expect((await get('/ok-then-junk')).status).toBe(200)
    const before = accepted
    const next = await get('/ok')
    expect(next.status).toBe(200)
    expect(Buffer.from(next.bytes!).equals(BODY)).toBe(true)
    expect(accepted - before).toBe(1)
  })

  it('a chunked error answer comes back as its status at once; a chunked 200 is read through node:http', async () => {
    const refused = await get('/chunked-503', 5_000)
    expect(refused.status).toBe(503)
    expect(refused.body).toContain('<Code>SlowDown</Code>')
    const chunked = await get('/chunked')
    expect(chunked.status).toBe(200)
    expect(Buffer.from(chunked.bytes!).equals(BODY.subarray(0, 1000))).toBe(true)
  })

  it('a body cut short and a silent server fail with codes the store classifies', async () => {
    await expect(get('/short')).rejects.toMatchObject({ code: 'ECONNRESET' })
    await expect(get('/silent', 200)).rejects.toMatchObject({ code: 'ERR_CAS_SILENT' })
  })

  it('an abort stops the request on the thread', async () => {
    const controller = new AbortController()
    const pending = threads.get(
      {
        url: `http://127.0.0.1:${port}/silent`,
        headers: { host: `127.0.0.1:${port}` },
        timeoutMs: 5_000,
        connectTimeoutMs: 2_000,
      },
      controller.signal,
    )
    setTimeout(() => controller.abort(new Error('stop')), 20)
    await expect(pending).rejects.toThrow('stop')
  })
})
