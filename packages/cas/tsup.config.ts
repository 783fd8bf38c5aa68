import { defineConfig } from 'tsup'

export default defineConfig({
  // The read thread's module is a file of its own (src/backends/read-threads.ts finds it beside the bundle).
  entry: { index: 'src/index.ts', 'read-worker': 'src/backends/read-worker.js' },
  format: ['esm'],
  // tsup 8 sets `baseUrl` for its declaration build, which TypeScript 6 deprecates.
  dts: { entry: { index: 'src/index.ts' }, compilerOptions: { ignoreDeprecations: '6.0' } },
  clean: true,
  sourcemap: true,
  target: 'node20',
})
