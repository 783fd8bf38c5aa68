import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { PutObjectCommand } from '@aws-sdk/client-s3'
import {
  adminClient,
  casConformanceTests,
  freshBucket,
  minioEndpoint,
  packageEntry,
} from '@dreamdb/cas-tests'
import { describe } from 'vitest'
import { MemoryBackend } from '../src/backends/memory.js'
import { ContentStore } from '../src/content-store.js'
import { toHex } from '../src/digest.js'
import { objectKey } from '../src/layout.js'
import { openStore } from '../src/open.js'

// The worker processes of the multi-process test load the build when current (no tsx to start).
const openStoreModule = packageEntry(fileURLToPath(new URL('..', import.meta.url)))
const keyOf = (cid: { multihash: { digest: Uint8Array } }): string => objectKey(toHex(cid.multihash.digest))

casConformanceTests({
  name: 'memory',
  async open() {
    const backend = new MemoryBackend('')
    return {
      store: new ContentStore(backend),
      url: 'memory://',
      corrupt: async (cid, bytes) => backend.corruptForTesting(keyOf(cid), bytes),
      cleanup: async () => {},
    }
  },
})

casConformanceTests({
  name: 'fs',
  openStoreModule,
  async open() {
    const root = await mkdtemp(join(tmpdir(), 'dreamdb-cas-'))
    return {
      store: await openStore(root),
      url: root,
      corrupt: (cid, bytes) => writeFile(join(root, ...keyOf(cid).split('/')), bytes),
      cleanup: () => rm(root, { recursive: true, force: true }),
    }
  },
})

const endpoint = minioEndpoint()
describe.runIf(endpoint !== undefined)('S3 against MinIO', () => {
  casConformanceTests({
    name: 's3 (MinIO)',
    openStoreModule,
    async open() {
      const bucket = await freshBucket(endpoint!)
      const url = `${endpoint}/${bucket}/some/prefix`
      const admin = adminClient(endpoint!)
      return {
        store: await openStore(url),
        url,
        corrupt: async (cid, bytes) => {
          await admin.send(
            new PutObjectCommand({ Bucket: bucket, Key: `some/prefix/${keyOf(cid)}`, Body: bytes }),
          )
        },
        cleanup: async () => admin.destroy(),
      }
    },
  })
})
