import { defineConfig } from 'tsup'

export default defineConfig({
  entry: { index: 'src/index.ts' },
  format: ['esm'],
  // An executable, not a library: no declarations.
  dts: false,
  clean: true,
  sourcemap: true,
  target: 'node20',
  banner: { js: '#!/usr/bin/env node' },
  // An optional dependency with native binaries: loaded from node_modules, only for --model.
  external: ['onnxruntime-node'],
})
