/**
 * A folder store from the packed @dreamdb/cas: put and get. `--no-sdk`: the AWS SDK is not
 * installed, and opening an S3 URL says which package to install; `--sdk`: it is, and the
 * same URL gets as far as the network (nothing listens there).
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore, type Store } from '@dreamdb/cas'

const sdk = process.argv[2] === '--sdk'
const dir = await mkdtemp(join(tmpdir(), 'dreamdb-pack-check-'))
try {
  const store: Store = await openStore(join(dir, 'store'))
  const bytes = new TextEncoder().encode('hello from a packed tarball')
  const cid = await store.put(bytes)
  assert.deepEqual(await store.get(cid), bytes)
  await store.close()

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
  } else {
    assert.equal(error.code, 'ERR_CAS_S3_SDK_MISSING', error.message)
    assert.match(String(error.message), /npm install @aws-sdk\/client-s3/)
  }
  console.log(`  cas: put/get on a folder ok; an S3 URL: ${error.code}`)
} finally {
  await rm(dir, { recursive: true, force: true })
}
