import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const source = (pkg: string) => fileURLToPath(new URL(`../${pkg}/src/index.ts`, import.meta.url))

export default defineConfig({
  resolve: {
    // Test against the sources of the layers below, not their last build.
    alias: {
      '@dreamdb/cas': source('cas'),
      '@dreamdb/manifest': source('manifest'),
      '@dreamdb/arrow': source('arrow'),
      '@dreamdb/vector': source('vector'),
    },
  },
  test: {
    // A timeout only stops a hung test (nothing asserts time); shared machines can be slow.
    testTimeout: 600_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    // One module graph for all of a package's files (they restore what they change): each
    // file importing the sources, Arrow and the AWS SDK anew cost 1-2 s per file.
    isolate: false,
  },
})
