import { defineConfig } from 'tsup'
import { library } from '../../tsup.base'

export default defineConfig(
  library({
    // The read threads' module is a file of its own, found beside the bundle (src/backends/read-threads.ts).
    entry: { index: 'src/index.ts', 'read-worker': 'src/backends/read-worker.js' },
    dts: { entry: { index: 'src/index.ts' } },
  }),
)
