import { build, defineConfig } from 'tsup'
import { executable } from '../../tsup.base'

export default defineConfig(
  executable({
    // An optional dependency with native binaries: loaded from node_modules, only for --model.
    external: ['onnxruntime-node'],
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
