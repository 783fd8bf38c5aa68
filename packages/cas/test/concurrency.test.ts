import { getEventListeners } from 'node:events'
import { expect, it } from 'vitest'
import { mapOrdered, onAbort, retry } from '../src/concurrency.js'

const quick = { minMs: 1, maxMs: 2 }

it('retry: a retryable failure is tried again, up to the attempts, and the last failure is thrown as it was', async () => {
  const seen: number[] = []
  const failure = { not: 'an Error' }
  const error = await retry(
    async (attempt) => {
      seen.push(attempt)
      throw failure
    },
    { attempts: 3, retryable: () => true, backoff: quick },
  ).catch((e: unknown) => e)
  expect(error).toBe(failure)
  expect(seen).toEqual([1, 2, 3])
})

it('retry: a final failure (a TypeError too) is thrown at once; a retryable TypeError is retried', async () => {
  let calls = 0
  const final = await retry(
    async () => {
      calls++
      throw new TypeError('final')
    },
    { attempts: 5, retryable: () => false, backoff: quick },
  ).catch((e: unknown) => e)
  expect((final as Error).message).toBe('final')
  expect(calls).toBe(1)
  const result = await retry(
    async (attempt) => {
      if (attempt < 3) throw new TypeError('passing')
      return 'ok'
    },
    { attempts: 5, retryable: () => true, backoff: quick },
  )
  expect(result).toBe('ok')
})

it("retry: 'now' tries again without using up an attempt", async () => {
  let calls = 0
  const result = await retry(
    async () => {
      calls++
      if (calls < 5) throw new Error('busy')
      return calls
    },
    { attempts: 2, retryable: () => 'now', backoff: { minMs: 60_000, maxMs: 60_000 } },
  )
  expect(result).toBe(5)
})

it("retry: an abort during the backoff is the signal's reason", async () => {
  const controller = new AbortController()
  const reason = { why: 'stopped' }
  const pending = retry(
    async () => {
      setImmediate(() => controller.abort(reason))
      throw new Error('transient')
    },
    {
      attempts: 3,
      retryable: () => true,
      backoff: { minMs: 60_000, maxMs: 60_000 },
      signal: controller.signal,
    },
  )
  await expect(pending).rejects.toBe(reason)
})

it('retry: an attempt that succeeds while the signal fires is returned, not turned into an abort', async () => {
  const controller = new AbortController()
  const result = await retry(
    async () => {
      controller.abort(new Error('too late'))
      return 'landed'
    },
    { attempts: 3, retryable: () => true, backoff: quick, signal: controller.signal },
  )
  expect(result).toBe('landed')
})

it('mapOrdered keeps input order with at most `concurrency` calls in flight and reads ahead no further', async () => {
  let inFlight = 0
  let most = 0
  let read = 0
  async function* source(): AsyncGenerator<number> {
    for (let i = 0; i < 20; i++) {
      read++
      yield i
    }
  }
  const out: number[] = []
  for await (const value of mapOrdered(
    source(),
    async (i) => {
      inFlight++
      most = Math.max(most, inFlight)
      await new Promise((resolve) => setTimeout(resolve, (20 - i) % 4))
      inFlight--
      return i * 10
    },
    3,
  )) {
    out.push(value)
    expect(read - out.length).toBeLessThanOrEqual(3)
  }
  expect(out).toEqual(Array.from({ length: 20 }, (_, i) => i * 10))
  expect(most).toBeLessThanOrEqual(3)
  await expect(mapOrdered([1], async (i) => i, 0).next()).rejects.toThrow(RangeError)
})

it('20 retries waiting under one signal add one abort listener to it, and all end with its reason', async () => {
  const controller = new AbortController()
  const reason = new Error('stopped')
  let failed = 0
  const pending = Array.from({ length: 20 }, () =>
    retry(
      async () => {
        failed++
        throw new Error('transient')
      },
      {
        attempts: 3,
        retryable: () => true,
        backoff: { minMs: 60_000, maxMs: 60_000 },
        signal: controller.signal,
      },
    ).catch((e: unknown) => e),
  )
  while (failed < 20) await new Promise((resolve) => setImmediate(resolve))
  expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1)
  controller.abort(reason)
  expect(await Promise.all(pending)).toEqual(Array(20).fill(reason))
})

it('onAbort: a stopped callback is not called; on an aborted signal it is called at once', () => {
  const controller = new AbortController()
  const heard: string[] = []
  const stop = onAbort(controller.signal, () => heard.push('a'))
  onAbort(controller.signal, () => heard.push('b'))
  stop()
  controller.abort()
  onAbort(controller.signal, () => heard.push('c'))
  expect(heard).toEqual(['b', 'c'])
})
