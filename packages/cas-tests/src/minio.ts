import { randomUUID } from 'node:crypto'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'

/**
 * The MinIO that `tools/minio/minio.sh run` started for this test run, or `undefined`.
 * Every package's S3 tests use this one check.
 * With CI=true a missing server is an error, so the S3 suites can never be skipped
 * silently in CI.
 */
export function minioEndpoint(): string | undefined {
  const endpoint = process.env.DREAMDB_TEST_S3_ENDPOINT
  if (endpoint === undefined || endpoint === '') {
    if (process.env.CI === 'true') {
      throw new Error('CI=true but DREAMDB_TEST_S3_ENDPOINT is not set: run the tests through tools/test.sh')
    }
    console.warn(
      'SKIPPED: the S3 suites need MinIO; run them with tools/test.sh (or tools/minio/minio.sh run -- ...)',
    )
    return undefined
  }
  return endpoint
}

export function adminClient(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  })
}

/** A new, empty bucket on the test server. */
export async function freshBucket(endpoint: string): Promise<string> {
  const bucket = `dreamdb-test-${randomUUID().slice(0, 13)}`
  const client = adminClient(endpoint)
  await client.send(new CreateBucketCommand({ Bucket: bucket }))
  client.destroy()
  return bucket
}
