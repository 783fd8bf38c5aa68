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
      '@dreamdb/dataset': source('dataset'),
      '@dreamdb/ingest/testing': fileURLToPath(new URL('./src/testing.ts', import.meta.url)),
      '@dreamdb/ingest': fileURLToPath(new URL('./src/index.ts', import.meta.url)),
    },
  },
  test: {
    globalSetup: ['./test/global-setup.ts'],
    // Near what a test needs: ingests of a few hundred rows into a folder, in process.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    // One module graph for all of a package's files (they restore what they change): each
    // file importing the sources, Arrow and the AWS SDK anew cost 1-2 s per file.
    isolate: false,
  },
})
