/**
 * A folder store from the packed @dreamdb/cas: put and get. `--no-sdk`: the AWS SDK is not
 * installed, and opening an S3 URL says which package to install; `--sdk`: it is, the folder
 * store did not load it (traced by trace-sdk.ts), and the S3 URL does load it and gets as far
 * as the network (nothing listens there).
 */
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore, type Store } from '@dreamdb/cas'

const sdk = process.argv[2] === '--sdk'
const trace = process.env.DREAMDB_TRACE_SDK
assert.ok(!sdk || trace, '--sdk runs with --import ./out/trace-sdk.js and DREAMDB_TRACE_SDK set')
/** The AWS SDK modules loaded so far. */
const sdkModules = () =>
  trace && existsSync(trace) ? readFileSync(trace, 'utf8').split('\n').filter(Boolean) : []
const dir = await mkdtemp(join(tmpdir(), 'dreamdb-pack-check-'))
try {
  const store: Store = await openStore(join(dir, 'store'))
  const bytes = new TextEncoder().encode('hello from a packed tarball')
  const cid = await store.put(bytes)
  assert.deepEqual(await store.get(cid), bytes)
  await store.close()
  assert.deepEqual(sdkModules(), [], 'a folder store loaded the AWS SDK')

  // Port 9 (discard) on the loopback: refused at once, or silent until the connect timeout.
  const error = await openStore('http://127.0.0.1:9/pack-check', {
    attempts: 1,
    connectTimeoutMs: 2000,
  }).then(
    () => assert.fail('an S3 URL with nothing behind it opened'),
    (error: unknown) => error as { code?: string; message?: string },
  )
  if (sdk) {
    assert.notEqual(error.code, 'ERR_CAS_S3_SDK_MISSING', error.message)
    assert.ok(sdkModules().length > 0, 'an S3 URL was opened without loading the AWS SDK')
  } else {
    assert.equal(error.code, 'ERR_CAS_S3_SDK_MISSING', error.message)
    assert.match(String(error.message), /npm install @aws-sdk\/client-s3/)
  }
  const loaded = sdk ? `, AWS SDK loaded only then (${sdkModules().length} modules)` : ''
  console.log(`  cas: put/get on a folder without the AWS SDK; an S3 URL: ${error.code}${loaded}`)
} finally {
  await rm(dir, { recursive: true, force: true })
}
