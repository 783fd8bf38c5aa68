import { randomUUID } from 'node:crypto'
import { S3Client } from '@aws-sdk/client-s3'
import { freshBucket, minioEndpoint, rejection } from '@dreamdb/cas-tests'
import { describe, expect, it } from 'vitest'
import { S3Backend } from '../src/backends/s3.js'
import { sha256 } from '../src/digest.js'
import { openStore } from '../src/open.js'

const endpoint = minioEndpoint()
const encode = (text: string): Uint8Array => new TextEncoder().encode(text)

function client(
  init: { credentials?: { accessKeyId: string; secretAccessKey: string }; maxAttempts?: number } = {},
) {
  return new S3Client({
    endpoint: endpoint!,
    region: 'us-east-1',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
    ...init,
  })
}

type Request = { method: string; path: string; headers: Record<string, string> }
type Handler = (args: { request: unknown }) => Promise<unknown>
/** The SDK's middleware types live in @smithy/types; this is the shape these tests need. */
type Middleware = (next: Handler) => Handler

describe.runIf(endpoint !== undefined)('S3 backend against a real MinIO', () => {
  it('a missing bucket is BucketNotFoundError naming it; createBucket creates it', async () => {
    const bucket = `dreamdb-missing-${randomUUID().slice(0, 8)}`
    const error = await rejection(openStore(`${endpoint}/${bucket}`))
    expect(error.code).toBe('ERR_CAS_BUCKET_NOT_FOUND')
    expect(error.message).toContain(bucket)
    const store = await openStore(`${endpoint}/${bucket}`, { createBucket: true })
    const cid = await store.put(encode('created'))
    expect(new TextDecoder().decode(await store.get(cid))).toBe('created')
    await store.close()
  })

  it('wrong credentials are AccessDeniedError, and the secret is never in the message', async () => {
    const bucket = await freshBucket(endpoint!)
    const secret = 'not-the-real-secret-key-123'
    const bad = client({ credentials: { accessKeyId: 'dreamdb-test', secretAccessKey: secret } })
    const error = await rejection(openStore(`${endpoint}/${bucket}`, { s3Client: bad }))
    expect(error.code).toBe('ERR_CAS_ACCESS_DENIED')
    expect(error.message).toContain('AWS_ACCESS_KEY_ID')
    expect(error.message).not.toContain(secret)
    expect(JSON.stringify(error)).not.toContain(secret)
    bad.destroy()
  })

  it('refuses to write refs when the server ignores conditional headers', async () => {
    const bucket = await freshBucket(endpoint!)
    const stripping = client()
    // Strip the headers before signing, so the real server sees plain, unconditional PUTs:
    // exactly what a server that ignores them would do.
    const strip: Middleware = (next) => async (args) => {
      const request = args.request as Request
      delete request.headers['if-none-match']
      delete request.headers['if-match']
      return next(args)
    }
    stripping.middlewareStack.add(strip as never, { step: 'build', name: 'stripConditionalHeaders' })
    const store = await openStore(`${endpoint}/${bucket}`, { s3Client: stripping })
    const error = await rejection(store.createRef('branches/main', encode('m1')))
    expect(error.code).toBe('ERR_CAS_NO_CONDITIONAL_WRITES')
    expect(error.message).toContain('If-None-Match')
    expect(await store.readRef('branches/main')).toBeUndefined()
    // Objects are content-addressed, so an unconditional put cannot lose anything.
    await store.put(encode('objects still work'))
    await store.close()
    stripping.destroy()
  })

  for (const retried of [true, false]) {
    it(`a ref write whose response is lost is reported as the success it was (${retried ? 'SDK retries' : 'no retry'})`, async () => {
      const bucket = await freshBucket(endpoint!)
      const lossy = client({ maxAttempts: retried ? 3 : 1 })
      let dropped = 0
      // Let the request reach MinIO, then lose the response, like a connection reset.
      const dropResponse: Middleware = (next) => async (args) => {
        const request = args.request as Request
        const result = await next(args)
        if (request.method === 'PUT' && request.path.includes('/refs/') && dropped < 2) {
          dropped++
          throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET', name: 'Error' })
        }
        return result
      }
      lossy.middlewareStack.add(dropResponse as never, {
        step: 'deserialize',
        name: 'dropResponse',
        priority: 'high',
      })
      const store = await openStore(`${endpoint}/${bucket}`, { s3Client: lossy })
      const created = await store.createRef('branches/main', encode('m1'))
      expect(created.generation).toBe(1)
      const updated = await store.updateRef('branches/main', encode('m2'), created.version)
      expect(updated.generation).toBe(2)
      expect(dropped).toBe(2)
      const read = await store.readRef('branches/main')
      expect(new TextDecoder().decode(read!.value)).toBe('m2')
      expect(read!.version).toBe(updated.version)
      await store.close()
      lossy.destroy()
    })
  }

  it('a 20 MiB put through the multipart path (parts of 8 MiB, a short last one) lands under its digest and leaves no staging object', async () => {
    const bucket = await freshBucket(endpoint!)
    const store = await openStore(`${endpoint}/${bucket}`)
    const bytes = new Uint8Array(20 << 20)
    for (let i = 0; i < bytes.byteLength; i++) bytes[i] = (i * 2654435761) >>> 24
    async function* chunks() {
      for (let i = 0; i < bytes.byteLength; i += 5 << 20) yield bytes.subarray(i, i + (5 << 20))
    }
    const cid = await store.put(chunks())
    expect(await store.size(cid)).toBe(20 << 20)
    const back = await store.get(cid)
    expect(Buffer.from(back).equals(Buffer.from(bytes))).toBe(true)
    const admin = client()
    const { ListObjectsV2Command } = await import('@aws-sdk/client-s3')
    const listed = await admin.send(new ListObjectsV2Command({ Bucket: bucket }))
    expect((listed.Contents ?? []).map((o) => o.Key).filter((k) => !k!.startsWith('objects/'))).toEqual([])
    admin.destroy()
    await store.close()
  })

  it("a put given the bytes' SHA-256 signs with it, and the server refuses one that does not match", async () => {
    const bucket = await freshBucket(endpoint!)
    const backend = await S3Backend.open({ endpoint, bucket, prefix: '' })
    const bytes = encode('content the caller has hashed already')
    const digest = sha256(bytes)
    const wrong = Uint8Array.from(digest, (b, i) => (i === 0 ? b ^ 1 : b))
    // Sent as the payload hash instead of one the SDK computes, so the server checks it.
    const error = await rejection(backend.writeObjectIfAbsent('objects/wrong', bytes, undefined, wrong))
    expect(String(error.cause ?? error.message)).toMatch(/SHA256|sha256|Mismatch/i)
    expect(await backend.objectSize('objects/wrong')).toBeUndefined()
    expect(await backend.writeObjectIfAbsent('objects/right', bytes, undefined, digest)).toEqual({
      written: true,
    })
    expect(await backend.objectSize('objects/right')).toBe(bytes.byteLength)
    await backend.close()
  })
})
