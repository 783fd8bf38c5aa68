import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { S3Client } from '@aws-sdk/client-s3'
import { describe, expect, it } from 'vitest'
import { type OpenStoreOptions, S3SupportMissingError } from '../src/index.js'
import { s3SdkMissing } from '../src/open.js'

// The AWS SDK is an optional peer: these check the error a user without it gets. The
// install without it is exercised for real by tools/pack-check.sh (npm, packed tarballs).

/** The error Node itself throws for `import(name)` from a folder with no node_modules. */
async function nodeImportError(name: string): Promise<Error> {
  const dir = await mkdtemp(join(tmpdir(), 'dreamdb-no-sdk-'))
  try {
    const script = `import(${JSON.stringify(name)}).then(() => console.log('{}'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })))`
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
      cwd: dir,
    })
    const { code, message } = JSON.parse(stdout) as { code?: string; message?: string }
    return Object.assign(new Error(message), { code })
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

describe('S3 support without the AWS SDK installed', () => {
  it('names the missing package and the install command', async () => {
    const cause = await nodeImportError('@aws-sdk/client-s3')
    const error = s3SdkMissing(cause)
    expect(error).toBeInstanceOf(S3SupportMissingError)
    expect(error?.code).toBe('ERR_CAS_S3_SDK_MISSING')
    expect(error?.missing).toBe('@aws-sdk/client-s3')
    expect(error?.cause).toBe(cause)
    expect(error?.message).toContain(
      'npm install @aws-sdk/client-s3 @aws-sdk/lib-storage @smithy/node-http-handler',
    )
  })

  it('recognises a package the SDK itself imports (a partial install)', async () => {
    expect(s3SdkMissing(await nodeImportError('@smithy/node-http-handler'))?.missing).toBe(
      '@smithy/node-http-handler',
    )
  })

  it('leaves every other failure as it was', async () => {
    expect(s3SdkMissing(await nodeImportError('left-pad-not-installed'))).toBeUndefined()
    expect(s3SdkMissing(await nodeImportError('./missing-file.js'))).toBeUndefined()
    expect(s3SdkMissing(new Error("Cannot find package '@aws-sdk/client-s3'"))).toBeUndefined()
    expect(s3SdkMissing(undefined)).toBeUndefined()
  })

  it("takes the caller's own S3Client", () => {
    // A compile-time check as much as a runtime one: `pnpm typecheck` includes this file.
    const options: OpenStoreOptions = { s3Client: new S3Client({ region: 'us-east-1' }) }
    expect(typeof options.s3Client?.send).toBe('function')
    options.s3Client?.destroy()
  })
})
