/**
 * The one build configuration every package's `tsup.config.ts` starts from (each adds only
 * what is its own): ESM for Node.js 20 with source maps, split into chunks so that a dynamic
 * `import()` (the S3 backend, the SDK behind it) is loaded only when it runs.
 */
import type { Options } from 'tsup'

// tsup 8 sets `baseUrl` for its declaration build, which TypeScript 6 deprecates.
const DTS_COMPILER_OPTIONS = { ignoreDeprecations: '6.0' }

const COMMON: Options = {
  format: ['esm'],
  clean: true,
  sourcemap: true,
  target: 'node20',
}

/**
 * A published library: `src/index.ts` to `dist/index.js` with `dist/index.d.ts` (the
 * `exports` of its package.json). `dts` given as an object is merged with the base one.
 */
export function library(options: Options = {}): Options {
  const { dts, ...rest } = options
  return {
    ...COMMON,
    entry: { index: 'src/index.ts' },
    ...rest,
    dts:
      dts === false
        ? false
        : typeof dts === 'object'
          ? { ...dts, compilerOptions: { ...DTS_COMPILER_OPTIONS, ...dts.compilerOptions } }
          : { compilerOptions: DTS_COMPILER_OPTIONS },
  }
}

/** A command: `src/index.ts` to an executable `dist/index.js`, no declarations. */
export function executable(options: Options = {}): Options {
  return {
    ...COMMON,
    entry: { index: 'src/index.ts' },
    dts: false,
    banner: { js: '#!/usr/bin/env node' },
    ...options,
  }
}
