import { defineConfig } from 'tsup'
import { library } from '../../tsup.base'

export default defineConfig(
  library({
    // `testing`: the shard writer that tests, the torture suite and the ingest benchmark share.
    // The decode thread's module is a file of its own, found beside the bundle (src/decode-threads.ts).
    entry: { index: 'src/index.ts', testing: 'src/testing.ts', 'decode-worker': 'src/decode-worker.js' },
    dts: { entry: { index: 'src/index.ts', testing: 'src/testing.ts' } },
    // An optional dependency with native binaries: loaded from node_modules, only with a model.
    external: ['onnxruntime-node'],
  }),
)
