import { defineConfig } from 'tsup'
import { library } from '../../tsup.base'

// One self-contained bundle (every @dreamdb package and apache-arrow inside it) that the
// wheel ships as dreamdb_dataset/_node/; split so the S3 SDK is parsed only when an S3 URL
// is opened (bridge start time, design/0007).
export default defineConfig(
  library({
    // The read threads of @dreamdb/cas run a module of their own, looked for beside the bundle.
    entry: { bridge: 'src/main.ts', 'read-worker': '../cas/src/backends/read-worker.js' },
    outDir: 'dreamdb_dataset/_node',
    outExtension: () => ({ js: '.mjs' }),
    splitting: true,
    noExternal: [/.*/],
    platform: 'node',
    dts: false,
    sourcemap: false,
    banner: {
      // Bundled CommonJS dependencies call require(); give the ESM bundle one.
      js: "import { createRequire as __dreamdbCreateRequire } from 'node:module'; const require = __dreamdbCreateRequire(import.meta.url);",
    },
  }),
)
