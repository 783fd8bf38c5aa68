import { describe, expect, it } from 'vitest'
import {
  BackendNotFoundError,
  classify,
  EXIT,
  formatError,
  OutputExistsError,
  UsageError,
} from '../src/errors.js'
import { colorFor, toJson } from '../src/io.js'

const coded = (code: string, message = 'm') => Object.assign(new Error(message), { code })

describe('classify', () => {
  it('maps error codes to documented exit codes', () => {
    expect(classify(new UsageError('x')).exitCode).toBe(EXIT.usage)
    expect(classify(coded('ERR_MANIFEST_REF_NOT_FOUND')).exitCode).toBe(EXIT.notFound)
    expect(classify(coded('ERR_DATASET_UNKNOWN_FIELD')).exitCode).toBe(EXIT.notFound)
    expect(classify(new BackendNotFoundError('/x')).exitCode).toBe(EXIT.notFound)
    expect(classify(coded('ERR_MANIFEST_REF_EXISTS')).exitCode).toBe(EXIT.conflict)
    expect(classify(coded('ERR_MANIFEST_CONFLICT')).exitCode).toBe(EXIT.conflict)
    expect(classify(new OutputExistsError('/x')).exitCode).toBe(EXIT.conflict)
    expect(classify(coded('ERR_CAS_INTEGRITY')).exitCode).toBe(EXIT.user)
    expect(classify(coded('ERR_ARROW_INVALID_VALUE')).exitCode).toBe(EXIT.user)
    for (const code of ['ERR_CAS_TIMEOUT', 'ERR_CAS_UNREACHABLE', 'ERR_CAS_OUTCOME_UNKNOWN']) {
      expect(classify(coded(code))).toMatchObject({ exitCode: EXIT.unavailable, internal: false })
      expect(classify(coded(code)).hint).toBeDefined()
    }
    expect(EXIT.unavailable).toBe(75)
  })

  it('treats an error without a DreamDB code as internal (70)', () => {
    const c = classify(new TypeError('undefined is not a function'))
    expect(c).toMatchObject({ exitCode: 70, code: 'ERR_CLI_INTERNAL', internal: true })
    expect(classify('a string').exitCode).toBe(70)
    expect(classify(coded('ENOENT')).exitCode).toBe(70)
  })

  it('treats an abort as an interruption (130)', () => {
    const abort = new AbortController()
    abort.abort()
    expect(classify(abort.signal.reason).exitCode).toBe(130)
  })

  it('formats one line with the code and a hint', () => {
    const line = formatError(classify(coded('ERR_MANIFEST_REF_NOT_FOUND', "No dataset named 'x'\nin y")))
    expect(line).toBe(
      "dreamdb: ERR_MANIFEST_REF_NOT_FOUND: No dataset named 'x' in y  (hint: dreamdb refs lists them)",
    )
  })
})

describe('io', () => {
  it('colours only a TTY, never with NO_COLOR, --no-color or TERM=dumb', () => {
    const tty = { isTTY: true, write: () => true, once: () => undefined }
    const pipe = { isTTY: false, write: () => true, once: () => undefined }
    expect(colorFor(tty, {})).toBe(true)
    expect(colorFor(pipe, {})).toBe(false)
    expect(colorFor(tty, { NO_COLOR: '1' })).toBe(false)
    expect(colorFor(tty, { NO_COLOR: '' })).toBe(true)
    expect(colorFor(tty, { TERM: 'dumb' })).toBe(false)
    expect(colorFor(tty, {}, false)).toBe(false)
  })

  it('writes bigints as strings and CIDs as their string form', async () => {
    const { CID } = await import('multiformats/cid')
    const cid = CID.parse('bafyreig5whpb3key4ovvjjavntyfxyoifs4uglspnd7fik5mmtzpjpiaci')
    expect(JSON.parse(toJson({ anchor: 2n ** 64n - 1n, cid, list: [cid] }))).toEqual({
      anchor: '18446744073709551615',
      cid: cid.toString(),
      list: [cid.toString()],
    })
  })
})
