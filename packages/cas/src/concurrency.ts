import type { AwaitIterable } from './interface.js'

/**
 * Map `source` through `fn` with at most `concurrency` calls in flight, yielding results
 * in input order. The source is read only as fast as results are consumed plus the
 * window, so memory stays bounded whatever the input size. The first failure rejects the
 * iteration; calls already started are left to settle.
 */
export async function* mapOrdered<T, R>(
  source: AwaitIterable<T>,
  fn: (item: T) => Promise<R>,
  concurrency: number,
  signal?: AbortSignal,
): AsyncGenerator<R> {
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`)
  }
  const window: Promise<R>[] = []
  for await (const item of source) {
    signal?.throwIfAborted()
    const pending = fn(item)
    // A rejection is observed when the window reaches it; mark it handled until then.
    pending.catch(() => {})
    window.push(pending)
    if (window.length >= concurrency) yield await window.shift()!
  }
  while (window.length > 0) yield await window.shift()!
}

/**
 * Resolve after `ms`, or reject with the signal's reason as soon as it aborts. The abort
 * listener goes when the timer fires, so a long-lived signal does not collect one per retry.
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(signal!.reason)
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/** Full-jitter exponential backoff: a random delay in [0, min(cap, base * 2^attempt)). */
export function jitteredBackoff(attempt: number, baseMs = 5, capMs = 500): number {
  return Math.random() * Math.min(capMs, baseMs * 2 ** attempt)
}
