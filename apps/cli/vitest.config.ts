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
    },
  },
  test: {
    globalSetup: ['./test/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
})
