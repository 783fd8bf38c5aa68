import { expect, it } from 'vitest'

it('exports a small, stable public surface', async () => {
  const api = await import('../src/index.js')
  expect(Object.keys(api).sort()).toMatchInlineSnapshot(`
    [
      "AccessDeniedError",
      "BucketNotFoundError",
      "BufferPool",
      "CasError",
      "ConditionalWritesUnsupportedError",
      "DAG_CBOR_CODEC",
      "InvalidBackendUrlError",
      "InvalidCidError",
      "InvalidRangeError",
      "InvalidRefNameError",
      "InvalidStoreOptionError",
      "ObjectIntegrityError",
      "ObjectNotFoundError",
      "ObjectShapeError",
      "ObjectTooLargeError",
      "RAW_CODEC",
      "RefConflictError",
      "RefCorruptError",
      "RefLockedError",
      "RefNotFoundError",
      "S3SupportMissingError",
      "StorageError",
      "StoreTimeoutError",
      "StoreUnreachableError",
      "WriteOutcomeUnknownError",
      "assertValidRefName",
      "cidFromDigest",
      "cidOf",
      "decodeStrict",
      "encodeStrict",
      "openStore",
      "parseBackendUrl",
      "parseCid",
      "permuteRows",
      "readThreadsForWork",
      "shape",
    ]
  `)
})

it('cidOf agrees with what a store returns, and parseCid rejects non-sha256 CIDs', async () => {
  const { cidOf, openStore, parseCid } = await import('../src/index.js')
  const store = await openStore('memory://')
  const bytes = new TextEncoder().encode('same')
  expect((await store.put(bytes)).toString()).toBe(cidOf(bytes).toString())
  expect(parseCid(cidOf(bytes).toString()).equals(cidOf(bytes))).toBe(true)
  expect(() => parseCid('not-a-cid')).toThrow(/Invalid CID 'not-a-cid'/)
  // An identity-hash CID: valid, but not something a store can verify.
  expect(() => parseCid('bafkqaaa')).toThrow(/not sha2-256/)
})
