import { defineConfig } from 'vitest/config'

/**
 * The browser tests (`pnpm test:browser`): the built `dreamdb ui` in headless Chromium. Kept
 * out of the default run (`*.e2e.ts` is not a test file there): they need the build and a
 * browser, and take seconds the default suite does not have.
 */
export default defineConfig({
  test: {
    include: ['test/**/*.e2e.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    fileParallelism: false,
  },
})
