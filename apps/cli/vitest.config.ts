import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const source = (pkg: string) => fileURLToPath(new URL(`../../packages/${pkg}/src/index.ts`, import.meta.url))

export default defineConfig({
  resolve: {
    // Test against the sources of the packages, not their last build.
    alias: {
      '@dreamdb/cas': source('cas'),
      '@dreamdb/manifest': source('manifest'),
      '@dreamdb/vector': source('vector'),
      '@dreamdb/arrow': source('arrow'),
      '@dreamdb/dataset': source('dataset'),
      '@dreamdb/ingest/testing': fileURLToPath(
        new URL('../../packages/ingest/src/testing.ts', import.meta.url),
      ),
      '@dreamdb/ingest': source('ingest'),
    },
  },
  test: {
    globalSetup: ['./test/global-setup.ts'],
    // Near what a test needs: the CLI runs in process (under 3 s a test on a loaded 2-core
    // machine); the files that run it as processes (lease, dist, tty, ingest's kill tests)
    // give those tests 60 s. Hooks prepare stores with @dreamdb/dataset.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    // One module graph for all of a package's files (they restore what they change): each
    // file importing the sources, Arrow and the AWS SDK anew cost 1-2 s per file.
    isolate: false,
  },
})
