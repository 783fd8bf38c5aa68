import { describe, expect, it } from 'vitest'
import { parseBackendUrl } from '../src/url.js'

describe('parseBackendUrl', () => {
  it.each([
    ['./data', { kind: 'fs', root: '/work/data' }],
    ['data', { kind: 'fs', root: '/work/data' }],
    ['/abs/path', { kind: 'fs', root: '/abs/path' }],
    ['file:///abs/path', { kind: 'fs', root: '/abs/path' }],
    ['memory://', { kind: 'memory', name: '' }],
    ['memory://shared', { kind: 'memory', name: 'shared' }],
    [
      'http://localhost:9000/imagenet-100',
      { kind: 's3', endpoint: 'http://localhost:9000', bucket: 'imagenet-100', prefix: '' },
    ],
    [
      'https://minio.example.com/bucket/team/datasets/',
      { kind: 's3', endpoint: 'https://minio.example.com', bucket: 'bucket', prefix: 'team/datasets/' },
    ],
    ['s3://my-bucket', { kind: 's3', endpoint: undefined, bucket: 'my-bucket', prefix: '' }],
    ['s3://my-bucket/a/b', { kind: 's3', endpoint: undefined, bucket: 'my-bucket', prefix: 'a/b/' }],
  ])('%s', (url, expected) => {
    expect(parseBackendUrl(url, '/work')).toEqual(expected)
  })

  it.each([
    ['', 'it is empty'],
    ['ftp://host/bucket', "unknown scheme 'ftp:'"],
    ['http://localhost:9000', 'the bucket is missing'],
    ['http://localhost:9000/', 'the bucket is missing'],
    ['s3://', 'the bucket is missing'],
    ['s3://Bad_Bucket', 'is not a valid bucket name'],
    ['http://host/a', 'is not a valid bucket name'],
    ['http://host:99999/bucket', 'not a well-formed URL'],
    ['memory://x/y', 'memory:// or memory://name'],
    ['file://otherhost/x', 'another host'],
    ['http://host/bucket?x=1', 'query strings'],
  ])('rejects %j', (url, reason) => {
    let error: (Error & { code?: string }) | undefined
    try {
      parseBackendUrl(url, '/work')
    } catch (e) {
      error = e as Error & { code?: string }
    }
    expect(error?.code).toBe('ERR_CAS_INVALID_URL')
    expect(error?.message).toContain(reason)
    expect(error?.message.split('\n').length).toBe(1)
  })

  it('never echoes credentials embedded in a URL', () => {
    let message = ''
    try {
      parseBackendUrl('http://AKIAKEY:supersecret@localhost:9000/bucket')
    } catch (e) {
      message = (e as Error).message
    }
    expect(message).toContain('credentials do not belong in the URL')
    expect(message).not.toContain('supersecret')
    expect(message).not.toContain('AKIAKEY')
  })
})
