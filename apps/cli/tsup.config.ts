import { build, defineConfig } from 'tsup'
import { executable } from '../../tsup.base'

export default defineConfig(
  executable({
    entry: {
      index: 'src/index.ts',
      // The worker threads of the bundled packages, found beside the code that starts them
      // (new URL('./read-worker.js', import.meta.url) in cas, './decode-worker.js' in ingest).
      'read-worker': '../../packages/cas/src/backends/read-worker.js',
      'decode-worker': '../../packages/ingest/src/decode-worker.js',
    },
    // The packages and their pure-JS dependencies are bundled: Node 20 pays about 1 ms of CPU
    // per ES module it loads (resolve, read, compile; no compile cache before Node 22), and
    // apache-arrow alone is 146 modules (~150 ms per process; bundled, ~20 ms). Every verb
    // stays a chunk of its own, loaded when it runs (program.ts), and so does the AWS SDK
    // (~200 ms of modules, only for an S3 backend). Left outside: native and WebAssembly
    // packages that find files beside themselves (onnxruntime-node, parquet-wasm, onnx-proto's
    // optional requires), and react-devtools-core (not installed: Ink imports it with DEV=true). Commander, Ink and React are bundled too (issue #13): loaded file by
    // file, commander cost every process ~8 ms (--version included) and Ink with React ~480 ms
    // of CPU (140 files, a third of them CommonJS read through the ES module loader; React's
    // development build) for ingest's progress bar on a terminal; bundled, ~90 ms, in chunks
    // loaded only on a terminal. CommonJS `require`s of Node built-ins find the `require` the
    // banner defines in each file (esbuild renames a bundled module's own). NODE_ENV is
    // production for React (the one bundled code that reads it): its production build.
    noExternal: [/^(?!onnxruntime-node|onnx-proto|parquet-wasm|react-devtools-core)/],
    env: { NODE_ENV: 'production' },
    banner: {
      js: [
        '#!/usr/bin/env node',
        "import { createRequire as __dreamdbCreateRequire } from 'node:module'",
        'const require = __dreamdbCreateRequire(import.meta.url)',
      ].join('\n'),
    },
    // An optional dependency with native binaries: loaded from node_modules, only for --model.
    external: ['onnxruntime-node', 'onnx-proto', 'parquet-wasm', 'react-devtools-core'],
    // The viewer's browser app (dreamdb ui) into dist/ui/app.js, shipped with the package.
    // Built after the CLI, not beside it: the CLI's build cleans dist/ first.
    onSuccess: async () => {
      await build({
        config: false,
        entry: { app: 'src/ui/app/main.ts' },
        outDir: 'dist/ui',
        platform: 'browser',
        format: ['esm'],
        target: 'es2022',
        minify: true,
        clean: false,
        dts: false,
        sourcemap: false,
        silent: true,
      })
    },
  }),
)
