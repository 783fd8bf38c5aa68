/**
 * The one retry and the one ordered map of this package, on p-retry and p-map (issue #15:
 * one of each utility). Every retry and every bounded fan-out in `@dreamdb/cas` goes
 * through these two functions, so abort, backoff and ordering behave the same everywhere.
 *
 * @internal
 */
import { pMapIterable } from 'p-map'
import pRetry from 'p-retry'
import type { AwaitIterable } from './interface.js'

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
 * up; then the last failure is thrown as it was. A caller's abort, during an attempt or a
 * backoff, is thrown as the signal's reason.
 */
export async function retry<T>(fn: (attempt: number) => Promise<T>, options: RetryOptions): Promise<T> {
  const { attempts, retryable, backoff, signal } = options
  try {
    return await pRetry(
      async (attempt) => {
        try {
          return await fn(attempt)
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
        ...(signal ? { signal } : {}),
      },
    )
  } catch (error) {
    if (signal?.aborted) throw signal.reason
    throw error instanceof AttemptFailed ? error.failure : error
  }
}
