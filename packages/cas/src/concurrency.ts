/**
 * The one retry and the one ordered map of this package, on p-retry and p-map (issue #15:
 * one of each utility), and the one way to hear a caller's abort. Every retry and every
 * bounded fan-out in `@dreamdb/cas` goes through these, so abort, backoff and ordering
 * behave the same everywhere.
 *
 * @internal
 */
import { pMapIterable } from 'p-map'
import pRetry from 'p-retry'
import type { AwaitIterable } from './interface.js'

/** The callbacks waiting on each caller signal; the signal itself holds one listener for all. */
const waiting = new WeakMap<AbortSignal, Set<(reason: unknown) => void>>()

/**
 * Call `fn` with the reason when `signal` aborts (at once if it has); the function returned
 * stops that. All callbacks of one signal share its one 'abort' listener: a listener per
 * request tripped Node's MaxListenersExceededWarning (`dreamdb export` and `inspect
 * --verify` read more than 10 objects at once under one signal), and `AbortSignal.any` kept
 * about 50 bytes per request alive on a long-lived signal (a whole ingest; Node 20).
 */
export function onAbort(signal: AbortSignal, fn: (reason: unknown) => void): () => void {
  if (signal.aborted) {
    fn(signal.reason)
    return () => {}
  }
  let callbacks = waiting.get(signal)
  if (callbacks === undefined) {
    const created = new Set<(reason: unknown) => void>()
    callbacks = created
    waiting.set(signal, created)
    signal.addEventListener(
      'abort',
      () => {
        waiting.delete(signal)
        for (const callback of created) callback(signal.reason)
      },
      { once: true },
    )
  }
  // An entry of its own, so that one function registered twice is stopped once at a time.
  const entry = (reason: unknown): void => fn(reason)
  const registered = callbacks
  registered.add(entry)
  return () => {
    registered.delete(entry)
  }
}

/**
 * Map `source` through `fn` with at most `concurrency` calls in flight, yielding results
 * in input order. The source is read only as fast as results are consumed plus the
 * window (p-map's `backpressure`), so memory stays bounded whatever the input size. The
 * first failure rejects the iteration at its position; calls already started are left to
 * settle.
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
  const mapped: AsyncIterable<R> = pMapIterable(
    source,
    (item: T) => {
      signal?.throwIfAborted()
      return fn(item)
    },
    { concurrency, backpressure: concurrency },
  )
  yield* mapped
}

/** When the next attempt starts after a failed one: `'now'` (no wait, no attempt used up), `true` (after the backoff) or `false` (never: the failure is final). */
export type RetryDecision = boolean | 'now'

export interface RetryOptions {
  /** Attempts in all, the first included; `Infinity` leaves the end to `retryable`. */
  attempts: number
  /**
   * Whether the failure of attempt `attempt` (from 1) is worth another attempt. Asked once,
   * right after that attempt failed, so it may read what the attempt recorded.
   */
  retryable: (error: unknown, attempt: number) => RetryDecision
  /**
   * The wait before a retry: a random time in [1, 2) × `minMs` × `factor`^(retries so far),
   * at most `maxMs` (p-retry's randomized exponential backoff). Default `factor`: 2.
   */
  backoff: { minMs: number; maxMs: number; factor?: number }
  signal?: AbortSignal | undefined
}

/** Carries whatever an attempt threw through p-retry, which would reject non-errors and never retry a TypeError. */
class AttemptFailed extends Error {
  constructor(
    readonly failure: unknown,
    readonly decision: RetryDecision,
  ) {
    super('attempt failed')
  }
}

/**
 * Run `fn` until it succeeds, `retryable` calls a failure final, or the attempts are used
 * up; then the last failure is thrown as it was. A caller's abort, during a failing attempt or a
 * backoff, is thrown as the signal's reason; an attempt that succeeds is returned even if the
 * signal fired meanwhile (its effect happened).
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const { attempts, retryable, backoff, signal } = options
  // p-retry listens to the signal it is given during each backoff: give it one of this call's
  // own, so that many retries under one caller signal still add one listener there (onAbort).
  const controller = signal === undefined ? undefined : new AbortController()
  const unwatch = signal === undefined ? undefined : onAbort(signal, (reason) => controller?.abort(reason))
  // p-retry throws the abort even when the attempt it was awaiting succeeded; an attempt that
  // succeeded (a ref moved, a lock taken) is the truth, and the caller must hear of it.
  let succeeded: { value: T } | undefined
  try {
    return await pRetry(
      async (attempt) => {
        try {
          const value = await fn(attempt)
          succeeded = { value }
          return value
        } catch (error) {
          throw new AttemptFailed(error, signal?.aborted ? false : retryable(error, attempt))
        }
      },
      {
        retries: attempts - 1,
        minTimeout: backoff.minMs,
        maxTimeout: backoff.maxMs,
        factor: backoff.factor ?? 2,
        randomize: true,
        shouldRetry: ({ error }) => (error as AttemptFailed).decision !== false,
        shouldConsumeRetry: ({ error }) => (error as AttemptFailed).decision !== 'now',
        ...(controller ? { signal: controller.signal } : {}),
      },
    )
  } catch (error) {
    if (succeeded !== undefined) return succeeded.value
    if (signal?.aborted) throw signal.reason
    throw error instanceof AttemptFailed ? error.failure : error
  } finally {
    unwatch?.()
  }
}
