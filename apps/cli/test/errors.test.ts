import { describe, expect, it } from 'vitest'
import {
  BackendNotFoundError,
  classify,
  EXIT,
  formatError,
  InterruptedError,
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
    for (const code of ['ERR_MANIFEST_GC_BUSY', 'ERR_MANIFEST_GC_INTERRUPTED']) {
      expect(classify(coded(code))).toMatchObject({ exitCode: EXIT.conflict, internal: false })
      expect(classify(coded(code)).hint).toMatch(/dreamdb gc/)
    }
    expect(classify(coded('ERR_DATASET_MISSING_OBJECT')).exitCode).toBe(EXIT.user)
    expect(classify(coded('ERR_DATASET_MISSING_OBJECT')).hint).toMatch(/dreamdb fsck/)
    expect(classify(coded('ERR_CAS_INTEGRITY')).exitCode).toBe(EXIT.user)
    expect(classify(coded('ERR_ARROW_INVALID_VALUE')).exitCode).toBe(EXIT.user)
    for (const code of ['ERR_CAS_TIMEOUT', 'ERR_CAS_UNREACHABLE', 'ERR_CAS_OUTCOME_UNKNOWN']) {
      expect(classify(coded(code))).toMatchObject({ exitCode: EXIT.unavailable, internal: false })
      expect(classify(coded(code)).hint).toBeDefined()
    }
    expect(EXIT.unavailable).toBe(75)
  })

  it('a commit of unknown outcome is unavailable (75), a manifest integrity error is a damaged store (1); both hinted', () => {
    const unknown = classify(coded('ERR_MANIFEST_COMMIT_UNKNOWN'))
    expect(unknown).toMatchObject({ exitCode: EXIT.unavailable, internal: false })
    expect(unknown.hint).toMatch(/dreamdb log --ref-name/)
    const integrity = classify(coded('ERR_MANIFEST_INTEGRITY'))
    expect(integrity).toMatchObject({ exitCode: EXIT.user, internal: false })
    expect(integrity.hint).toMatch(/damaged/)
  })

  it('the README documents each of these codes under its exit code, and the damaged-ref fields of refs --json', async () => {
    const { readFile } = await import('node:fs/promises')
    const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
    const rows = new Map(
      readme
        .split('\n')
        .map((line) => /^\| (\d+) \|(.*)$/.exec(line))
        .filter((m): m is RegExpExecArray => m !== null)
        .map((m) => [Number(m[1]), m[2]!] as const),
    )
    for (const code of [
      'ERR_CAS_TIMEOUT',
      'ERR_CAS_UNREACHABLE',
      'ERR_CAS_OUTCOME_UNKNOWN',
      'ERR_MANIFEST_COMMIT_UNKNOWN',
      'ERR_MANIFEST_INTEGRITY',
      'ERR_CAS_INTEGRITY',
      'ERR_MANIFEST_GC_BUSY',
      'ERR_MANIFEST_GC_INTERRUPTED',
      'ERR_DATASET_MISSING_OBJECT',
    ]) {
      expect(rows.get(classify(coded(code)).exitCode), code).toContain(`\`${code}\``)
    }
    const refsRow = readme.split('\n').find((line) => line.startsWith('| `refs` |'))
    expect(refsRow).toContain('damaged: true, code, message')
  })

  it('treats an error without a DreamDB code as internal (70)', () => {
    const c = classify(new TypeError('undefined is not a function'))
    expect(c).toMatchObject({ exitCode: 70, code: 'ERR_CLI_INTERNAL', internal: true })
    expect(classify('a string').exitCode).toBe(70)
    expect(classify(coded('ENOENT')).exitCode).toBe(70)
  })

  it("treats Node's own ERR_ codes as bugs (70, stack with DREAMDB_DEBUG), only DreamDB's as the user's", () => {
    for (const code of [
      'ERR_INVALID_ARG_TYPE',
      'ERR_STREAM_PREMATURE_CLOSE',
      'ERR_OUT_OF_RANGE',
      'ERR_MODULE_NOT_FOUND',
    ]) {
      expect(classify(coded(code)), code).toMatchObject({
        exitCode: 70,
        code: 'ERR_CLI_INTERNAL',
        internal: true,
      })
    }
    for (const code of [
      'ERR_CAS_INTEGRITY',
      'ERR_DATASET_READ_ONLY',
      'ERR_VECTOR_BAD_DIM',
      'ERR_INGEST_BAD_SHARD',
    ]) {
      expect(classify(coded(code)), code).toMatchObject({ exitCode: 1, code, internal: false })
    }
  })

  it('SIGINT and SIGTERM are 130 and 143, also when a layer wraps the reason in its own AbortError', () => {
    const int = new InterruptedError('SIGINT')
    const term = new InterruptedError('SIGTERM')
    expect(classify(int)).toMatchObject({
      exitCode: 130,
      code: 'ERR_CLI_INTERRUPTED',
      message: 'interrupted',
    })
    expect(classify(term)).toMatchObject({ exitCode: 143, message: 'terminated (SIGTERM)' })
    // What Node's own APIs throw when their signal aborts: an AbortError whose cause is the reason.
    const wrapped = Object.assign(new Error('The operation was aborted', { cause: term }), {
      name: 'AbortError',
    })
    expect(classify(wrapped).exitCode).toBe(143)
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
