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
    testTimeout: 180_000,
    hookTimeout: 60_000,
    fileParallelism: false,
  },
})
