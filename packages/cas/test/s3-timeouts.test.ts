import { rejection } from '@dreamdb/cas-tests'
import { describe, expect, it } from 'vitest'
import { resolveS3Timeouts } from '../src/backends/s3.js'
import { openStore } from '../src/open.js'

describe('S3 deadlines configuration', () => {
  it('defaults to 30 s of silence, 10 s to connect, 3 attempts', () => {
    expect(resolveS3Timeouts({}, {})).toEqual({ timeoutMs: 30_000, connectTimeoutMs: 10_000, attempts: 3 })
  })

  it('takes the environment, and an option over it', () => {
    const env = {
      DREAMDB_S3_TIMEOUT_MS: '5000',
      DREAMDB_S3_CONNECT_TIMEOUT_MS: '700',
      DREAMDB_S3_ATTEMPTS: '1',
    }
    expect(resolveS3Timeouts({}, env)).toEqual({ timeoutMs: 5000, connectTimeoutMs: 700, attempts: 1 })
    expect(resolveS3Timeouts({ timeoutMs: 250 }, env)).toEqual({
      timeoutMs: 250,
      connectTimeoutMs: 700,
      attempts: 1,
    })
    expect(resolveS3Timeouts({}, { DREAMDB_S3_TIMEOUT_MS: '' }).timeoutMs).toBe(30_000)
  })

  it('refuses a value that is not a positive integer, naming where it came from', () => {
    for (const [options, env, name] of [
      [{}, { DREAMDB_S3_TIMEOUT_MS: 'soon' }, 'DREAMDB_S3_TIMEOUT_MS'],
      [{}, { DREAMDB_S3_ATTEMPTS: '0' }, 'DREAMDB_S3_ATTEMPTS'],
      [{ timeoutMs: -1 }, {}, 'timeoutMs'],
      [{ attempts: 1.5 }, {}, 'attempts'],
      [{ connectTimeoutMs: Number.NaN }, {}, 'connectTimeoutMs'],
    ] as const) {
      let error: unknown
      try {
        resolveS3Timeouts(options, env)
      } catch (e) {
        error = e
      }
      expect(error).toMatchObject({ code: 'ERR_CAS_INVALID_OPTION', option: name })
    }
  })

  it('openStore refuses a bad option before it sends anything', async () => {
    const error = await rejection(openStore('http://127.0.0.1:9/bucket', { timeoutMs: 0 }))
    expect(error.code).toBe('ERR_CAS_INVALID_OPTION')
  })
})
