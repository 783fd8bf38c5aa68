import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    // A timeout only stops a hung test (nothing asserts time); shared machines can be slow.
    testTimeout: 600_000,
    hookTimeout: 60_000,
    // The conformance suites share one MinIO; files run one after another so that the
    // multi-process ref test is not starved of the two cores.
    fileParallelism: false,
    // One module graph for all of a package's files (they restore what they change): each
    // file importing the sources, Arrow and the AWS SDK anew cost 1-2 s per file.
    isolate: false,
  },
})
