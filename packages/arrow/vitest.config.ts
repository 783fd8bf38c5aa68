import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

export default defineConfig({
  resolve: {
    // Test against the sources of the layer below, not its last build.
    alias: {
      '@dreamdb/cas': fileURLToPath(new URL('../cas/src/index.ts', import.meta.url)),
      '@dreamdb/manifest': fileURLToPath(new URL('../manifest/src/index.ts', import.meta.url)),
      '@dreamdb/vector': fileURLToPath(new URL('../vector/src/index.ts', import.meta.url)),
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
