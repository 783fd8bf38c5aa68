/**
 * Ingest is tested on the sources of the layers below (vitest aliases).
 * `@dreamdb/vector` imports a module generated from its WAT kernels; (re)generate it here,
 * as vector's own tests do, so `vitest run` works from a clean clone without a build.
 */
import { fileURLToPath } from 'node:url'

const BUILD_WASM = fileURLToPath(new URL('../../../packages/vector/scripts/build-wasm.mjs', import.meta.url))

export default async function setup(): Promise<void> {
  const { buildWasm } = (await import(BUILD_WASM)) as { buildWasm: () => Promise<void> }
  await buildWasm()
}
