/**
 * The CLI on a real MinIO (issue 14): a bucket that does not exist is a typed error naming it
 * with a hint, and `init --create-bucket` creates it; missing credentials are the user's
 * mistake, not a bug; and S3 verbs print nothing on stderr that is not the user's business
 * (the AWS SDK's Node.js notice, MaxListenersExceededWarning from many reads at once).
 * Skipped without DREAMDB_TEST_S3_ENDPOINT (tools/minio/minio.sh run -- ... sets it).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cli, record, SCHEMA } from './helpers.js'

const endpoint = process.env.DREAMDB_TEST_S3_ENDPOINT
const unique = (name: string) => `${name}-${process.pid}-${Date.now().toString(36)}`

describe.skipIf(!endpoint)('on MinIO', () => {
  let cwd: string
  /** A bucket holding `corpus` (200 records in buckets of 10: many objects to read at once) and `prep-v1`. */
  let backend: string
  beforeAll(async () => {
    cwd = await mkdtemp(join(tmpdir(), 'dreamdb-cli-s3-'))
    backend = `${endpoint}/${unique('cli')}`
    await (await openStore(backend, { createBucket: true })).close()
    const ds = await Dataset.create('corpus', { backend, schema: SCHEMA })
    await ds.appendMany(
      Array.from({ length: 200 }, (_, i) => record(i)),
      { bucketRecords: 10 },
    )
    await ds.snapshot('prep-v1')
    await ds.repository.store.close()
  })
  afterAll(async () => {
    await rm(cwd, { recursive: true, force: true })
  })

  it('a bucket that does not exist: exit 3, naming it, with the way to create it', async () => {
    const bucket = unique('fresh')
    const result = await cli(['refs', '--backend', `${endpoint}/${bucket}`], { cwd })
    expect(result.code).toBe(3)
    const lines = result.stderr.trimEnd().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/^dreamdb: ERR_CAS_BUCKET_NOT_FOUND: /)
    expect(lines[0]).toContain(`'${bucket}'`)
    expect(lines[0]).toContain('--create-bucket')
  })

  it('init --create-bucket creates the bucket, and later verbs find the dataset', async () => {
    const url = `${endpoint}/${unique('created')}`
    const schema = JSON.stringify([{ name: 'label', family: 'scalar', kind: 'categorical' }])
    const created = await cli(
      ['init', 'ds', '--schema', schema, '--backend', url, '--create-bucket', '--json'],
      {
        cwd,
      },
    )
    expect(created.code, created.stderr).toBe(0)
    expect(JSON.parse(created.stdout)).toMatchObject({ name: 'ds', kind: 'branch' })
    const refs = await cli(['refs', '--json', '--backend', url], { cwd })
    expect(refs.code, refs.stderr).toBe(0)
    expect(JSON.parse(refs.stdout).refs.map((r: { name: string }) => r.name)).toEqual(['ds'])
  })

  it('no credentials: a user error naming the variables to set, not a bug', async () => {
    const home = await mkdtemp(join(tmpdir(), 'dreamdb-cli-home-'))
    try {
      const result = await cli(['refs', '--backend', backend], {
        cwd,
        spawn: true, // the S3 client reads its credentials from the process
        env: {
          AWS_ACCESS_KEY_ID: undefined,
          AWS_SECRET_ACCESS_KEY: undefined,
          AWS_SESSION_TOKEN: undefined,
          AWS_PROFILE: undefined,
          HOME: home, // no ~/.aws
        },
      })
      expect(result.code).toBe(1)
      const lines = result.stderr.trimEnd().split('\n')
      expect(lines).toHaveLength(1)
      expect(lines[0]).toMatch(/^dreamdb: ERR_CAS_ACCESS_DENIED: /)
      expect(lines[0]).toContain('AWS_ACCESS_KEY_ID')
      expect(lines[0]).not.toContain('a bug')
    } finally {
      await rm(home, { recursive: true, force: true })
    }
  })

  // Processes one after another: a few seconds each through tsx on a loaded machine.
  it('S3 verbs print nothing on stderr (no AWS SDK notice) without tools/env.sh', async () => {
    for (const args of [
      ['refs'],
      ['export', 'prep-v1', '--format', 'jsonl', '--fields', 'label', '--out', '-'],
      ['inspect', 'prep-v1', '--verify', '--no-splits'],
    ]) {
      const result = await cli([...args, '--backend', backend], {
        cwd,
        spawn: true,
        env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: undefined },
      })
      expect(result.code, result.stderr).toBe(0)
      expect(result.stderr).toBe('')
    }
  }, 90_000)

  it('export and inspect --verify hold one abort listener, not one per request (no MaxListenersExceededWarning even with DREAMDB_DEBUG)', async () => {
    for (const args of [
      ['export', 'prep-v1', '--format', 'jsonl', '--out', '-'],
      ['inspect', 'prep-v1', '--verify', '--no-splits'],
    ]) {
      const result = await cli([...args, '--backend', backend], {
        cwd,
        spawn: true,
        // DREAMDB_DEBUG lets Node's process warnings through: the leak must be gone, not hidden.
        env: { DREAMDB_DEBUG: '1' },
      })
      expect(result.code, result.stderr).toBe(0)
      expect(result.stderr).not.toContain('MaxListenersExceededWarning')
    }
  }, 90_000)
})
