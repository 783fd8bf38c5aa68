import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: {
    // Test against the sources of the layers below, not their last build.
    alias: {
      '@dreamdb/cas': fileURLToPath(new URL('../cas/src/index.ts', import.meta.url)),
    },
  },
  test: {
    // Assembles src/kernels/kernels.wat first, so tests run from a clean clone.
    globalSetup: ['./test/global-setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 60_000,
    fileParallelism: false,
    // One module graph for all of a package's files (they restore what they change): each
    // file importing the sources, Arrow and the AWS SDK anew cost 1-2 s per file.
    isolate: false,
  },
})
