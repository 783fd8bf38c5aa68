/**
 * How the read threads share GETs (read-threads.ts `#worker`): by the bytes each has in hand,
 * so that a pass asking for large and small objects in turn does not leave every large body,
 * and its hashing, to one thread (round robin did, with two threads).
 */
import { createServer, type Server } from 'node:http'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ReadThreads } from '../src/backends/read-threads.js'

const BODY = Buffer.alloc(300_000, 7)
let server: Server
let base = ''

beforeAll(async () => {
  server = createServer((_, response) => {
    response.writeHead(200, { 'content-length': BODY.length })
    response.end(BODY)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('no port')
  base = `http://127.0.0.1:${address.port}`
})

afterAll(async () => {
  server.closeAllConnections()
  await new Promise((resolve) => server.close(resolve))
})

const request = (path: string) => ({
  url: `${base}${path}`,
  headers: { host: base.slice(7) },
  timeoutMs: 5_000,
  connectTimeoutMs: 5_000,
})

it('spreads large and small GETs asked in turn over both threads by their expected bytes', async () => {
  const threads = new ReadThreads(2)
  const large = 16 << 20
  const small = 64 << 10
  // A request is given to a worker when it is asked, before any answer: the loads are visible at once.
  const gets = [large, small, large, small].map((expected, i) =>
    threads.get(request(`/object-${i}`), undefined, {}, expected),
  )
  expect(threads.loads()).toEqual([
    { requests: 2, bytes: large + small },
    { requests: 2, bytes: large + small },
  ])
  for (const reply of await Promise.all(gets)) expect(reply.bytes?.length).toBe(BODY.length)
  expect(threads.loads()).toEqual([
    { requests: 0, bytes: 0 },
    { requests: 0, bytes: 0 },
  ])
})

it('weighs a GET by the size an earlier answer from the same URL had', async () => {
  const threads = new ReadThreads(1)
  await threads.get(request('/known'))
  const again = threads.get(request('/known'))
  // Never asked before: the mean of the bodies received so far (this one's size too).
  const fresh = threads.get(request('/unknown'))
  expect(threads.loads()).toEqual([{ requests: 2, bytes: 2 * BODY.length }])
  await Promise.all([again, fresh])
  expect(threads.loads()).toEqual([{ requests: 0, bytes: 0 }])
})
