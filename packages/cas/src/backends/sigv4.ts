/**
 * AWS Signature Version 4 for one kind of request: a GET of an object, path-style, with an
 * unsigned payload. Object reads of an S3 store whose server the caller named are sent by
 * the read threads over plain `node:http` (read-threads.ts), not through the SDK, so they
 * need their headers signed here; everything else still goes through the SDK's client.
 *
 * The algorithm is the published one (docs.aws.amazon.com, "Signature Version 4 signing
 * process"): a canonical request, a string to sign over its SHA-256, and an HMAC chain from
 * the secret over date, region, service and `aws4_request`.
 *
 * @internal
 */
import { createHash, createHmac } from 'node:crypto'
import { LRUCache } from 'lru-cache'

export interface SigningCredentials {
  accessKeyId: string
  secretAccessKey: string
  sessionToken?: string | undefined
}

/** A request ready to send: its URL and every header, signature included. */
export interface SignedRequest {
  url: string
  headers: Record<string, string>
}

/** RFC 3986 encoding of a path, as S3 expects it (unreserved characters and `/` kept). */
export function encodePath(path: string): string {
  return path.replace(/[^A-Za-z0-9\-._~/]/g, (c) =>
    [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join(''),
  )
}

const keyCache = new LRUCache<string, Buffer>({ max: 16 })

/** The signing key of a day, region and service (cached: it changes once a day). */
function signingKey(secret: string, day: string, region: string, service: string): Buffer {
  const id = `${day}\u0000${region}\u0000${service}\u0000${secret}`
  let key = keyCache.get(id)
  if (key === undefined) {
    const hmac = (k: string | Buffer, data: string) => createHmac('sha256', k).update(data).digest()
    key = hmac(hmac(hmac(hmac(`AWS4${secret}`, day), region), service), 'aws4_request')
    keyCache.set(id, key)
  }
  return key
}

/**
 * Sign a GET of `/<bucket>/<key>` on `endpoint` (an origin such as `http://127.0.0.1:9000`).
 */
export function signGet(
  endpoint: string,
  bucket: string,
  key: string,
  credentials: SigningCredentials,
  region: string,
  now: Date = new Date(),
): SignedRequest {
  const origin = new URL(endpoint)
  const path = encodePath(`/${bucket}/${key}`)
  const amzDate = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '')
  const day = amzDate.slice(0, 8)
  const headers: Record<string, string> = {
    host: origin.host,
    'x-amz-content-sha256': 'UNSIGNED-PAYLOAD',
    'x-amz-date': amzDate,
  }
  if (credentials.sessionToken) headers['x-amz-security-token'] = credentials.sessionToken
  const names = Object.keys(headers).sort()
  const signedHeaders = names.join(';')
  const canonical = [
    'GET',
    path,
    '',
    ...names.map((name) => `${name}:${headers[name]!.trim()}`),
    '',
    signedHeaders,
    'UNSIGNED-PAYLOAD',
  ].join('\n')
  const scope = `${day}/${region}/s3/aws4_request`
  const toSign = [
    'AWS4-HMAC-SHA256',
    amzDate,
    scope,
    createHash('sha256').update(canonical).digest('hex'),
  ].join('\n')
  const signature = createHmac('sha256', signingKey(credentials.secretAccessKey, day, region, 's3'))
    .update(toSign)
    .digest('hex')
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${scope}, SignedHeaders=${signedHeaders}, Signature=${signature}`
  return { url: `${origin.protocol}//${origin.host}${path}`, headers }
}
