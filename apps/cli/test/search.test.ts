/**
 * `search` and `migrate` as thin wrappers over Dataset.search and Dataset.migrate: exact
 * search on float32, IVF-RaBitQ after a migrate, filters, `--json`, and bad input.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { MigrateResult } from '../src/commands/migrate.js'
import type { SearchResult } from '../src/commands/search.js'
import { type CliResult, cli, LABELS, prepareStore, record, tempDir } from './helpers.js'

let dir: { path: string; remove: () => Promise<void> }
const run = (args: string[]) => cli(args, { cwd: dir.path })
type Json<T> = {
  [K in keyof T]: T[K] extends bigint ? string : T[K] extends bigint | null ? string | null : T[K]
}
const parse = <T>(result: CliResult): T => {
  expect(result.stderr).toBe('')
  expect(result.code).toBe(0)
  return JSON.parse(result.stdout) as T
}
const expectError = (result: CliResult, exitCode: number, code: string) => {
  expect(result.stdout).toBe('')
  expect(result.stderr.trimEnd().split('\n')).toHaveLength(1)
  expect(result.stderr).toMatch(new RegExp(`^dreamdb: ${code}: .+`))
  expect(result.code).toBe(exitCode)
  return result.stderr.trim()
}

beforeAll(async () => {
  dir = await tempDir()
  await prepareStore(dir.path)
})
afterAll(async () => dir?.remove())

describe('search', () => {
  it('finds the exact nearest records of a float32 field, with their scalar fields', async () => {
    // Record 40's vector: [40, 5, 1, -1]; under cosine its nearest neighbours are the records
    // whose first component dominates the same way.
    const out = parse<
      Json<SearchResult> & {
        format: string
        hits: { anchor: string; distance: number; values: Record<string, string> }[]
      }
    >(
      await run([
        'search',
        '--ref-name',
        'prep-v1',
        '--query-json',
        JSON.stringify(record(40).embedding),
        '-k',
        '3',
        '--json',
      ]),
    )
    expect(out.format).toBe('dreamdb.search/1')
    expect(out.algorithm).toBeNull()
    expect(out.hits).toHaveLength(3)
    expect(out.hits[0]!.distance).toBeCloseTo(0, 5)
    // Anchors are minted from 1 in append order: record 40 is anchor 41.
    expect(out.hits[0]!.anchor).toBe('41')
    expect(out.hits[0]!.values).toEqual({ label: LABELS[40 % 4], split: 'train' })
    for (let i = 1; i < 3; i++)
      expect(out.hits[i]!.distance).toBeGreaterThanOrEqual(out.hits[i - 1]!.distance)
  })

  it('uses a record as the query and filters by scalar fields', async () => {
    const out = parse<{
      query: { anchor: string }
      hits: { anchor: string; values: { split: string; label: string } }[]
    }>(
      await run([
        'search',
        'prep-v1',
        '--like-anchor',
        '41',
        '-k',
        '5',
        '--filter',
        'split=validation,label=fish',
        '--json',
      ]),
    )
    expect(out.query.anchor).toBe('41')
    expect(out.hits.length).toBeGreaterThan(0)
    for (const hit of out.hits) expect(hit.values).toEqual({ split: 'validation', label: 'fish' })
    const text = await run(['search', 'prep-v1', '--like-anchor', '41', '-k', '2'])
    expect(text.code).toBe(0)
    expect(text.stdout.split('\n')[0]).toMatch(/^RANK +ANCHOR +DISTANCE +label +split$/)
    expect(text.stdout.split('\n')[1]).toMatch(/^ +1 +41 +0\.0000 +cat +train$/)
  })

  it('refuses contradictory or malformed queries and unknown names', async () => {
    expectError(await run(['search', 'prep-v1']), 2, 'ERR_CLI_USAGE')
    expectError(
      await run(['search', 'prep-v1', '--query-json', '[1,2,3,4]', '--like-anchor', '1']),
      2,
      'ERR_CLI_USAGE',
    )
    expectError(await run(['search', 'prep-v1', '--query-json', '[1, "x"]']), 2, 'ERR_CLI_USAGE')
    expectError(await run(['search', 'prep-v1', '--query-json', '[1,2]']), 1, 'ERR_DATASET_INVALID_OPTION')
    expectError(await run(['search', 'prep-v1', '--like-anchor', '99999']), 3, 'ERR_CLI_ANCHOR_NOT_FOUND')
    expectError(
      await run(['search', 'prep-v1', '--field', 'nope', '--like-anchor', '1']),
      3,
      'ERR_DATASET_UNKNOWN_FIELD',
    )
    expectError(
      await run(['search', 'prep-v1', '--like-anchor', '1', '--filter', 'image=x']),
      2,
      'ERR_CLI_USAGE',
    )
    expectError(
      await run(['search', 'prep-v1', '--like-anchor', '1', '--filter', 'label']),
      2,
      'ERR_CLI_USAGE',
    )
    expectError(await run(['search', 'nope', '--like-anchor', '1']), 3, 'ERR_MANIFEST_REF_NOT_FOUND')
  })
})

describe('migrate', () => {
  it('opts a field into IVF-RaBitQ on a branch; search goes through the index; snapshots keep theirs', async () => {
    const out = parse<Json<MigrateResult> & { format: string }>(
      await run([
        'migrate',
        '--ref-name',
        'corpus',
        '--field',
        'embedding',
        '--algorithm',
        'dreamdb.ivf-cosine',
        '--bits',
        '4',
        '--json',
      ]),
    )
    expect(out).toMatchObject({
      format: 'dreamdb.migrate/1',
      ref: 'corpus',
      field: 'embedding',
      algorithm: 'dreamdb.ivf-cosine',
      bits: 4,
      rerank: true,
      records: 150,
    })
    expect(out.manifest).not.toBe(out.from)
    expect(out.spatialIndex).toMatch(/^bafy/)
    expect(out.compressor).toMatch(/^bafy/)
    const hits = parse<{ algorithm: string; hits: { anchor: string; distance: number }[] }>(
      await run(['search', 'corpus', '--like-anchor', '41', '-k', '3', '--nprobe', '4', '--json']),
    )
    expect(hits.algorithm).toBe('dreamdb.ivf-cosine')
    expect(hits.hits[0]).toMatchObject({ anchor: '41' })
    const noRerank = await run([
      'search',
      'corpus',
      '--like-anchor',
      '41',
      '-k',
      '3',
      '--no-rerank',
      '--json',
    ])
    expect(parse<{ rerank: boolean }>(noRerank).rerank).toBe(false)
    // The snapshot taken before is untouched.
    const pinned = parse<{ algorithm: string | null }>(
      await run(['search', 'prep-v1', '--like-anchor', '41', '--json']),
    )
    expect(pinned.algorithm).toBeNull()
    // Back to float32, in text.
    const back = await run(['migrate', 'corpus', '--algorithm', 'float32'])
    expect(back.code, back.stderr).toBe(0)
    expect(back.stdout).toMatch(
      /^migrated 'embedding' of corpus \(150 records\) to plain float32 vectors in /,
    )
  })

  it('refuses a snapshot, an unknown field, a bad algorithm', async () => {
    expectError(
      await run(['migrate', 'prep-v1', '--algorithm', 'dreamdb.ivf-cosine']),
      1,
      'ERR_DATASET_READ_ONLY',
    )
    expectError(
      await run(['migrate', 'corpus', '--field', 'nope', '--algorithm', 'dreamdb.ivf-cosine']),
      3,
      'ERR_DATASET_UNKNOWN_FIELD',
    )
    expectError(
      await run(['migrate', 'corpus', '--field', 'label', '--algorithm', 'dreamdb.ivf-cosine']),
      1,
      'ERR_DATASET_INVALID_OPTION',
    )
    expectError(await run(['migrate', 'corpus', '--algorithm', 'pq']), 2, 'ERR_CLI_USAGE')
    expectError(await run(['migrate', 'corpus']), 2, 'ERR_CLI_USAGE')
    expectError(
      await run(['migrate', 'corpus', '--algorithm', 'dreamdb.ivf-cosine', '--bits', '9']),
      1,
      'ERR_DATASET_INVALID_OPTION',
    )
  })
})
