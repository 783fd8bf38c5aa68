import { defineConfig } from 'tsup'
import { executable } from '../../tsup.base'

export default defineConfig(
  executable({
    // An optional dependency with native binaries: loaded from node_modules, only for --model.
    external: ['onnxruntime-node'],
  }),
)
