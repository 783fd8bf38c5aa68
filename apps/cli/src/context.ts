/** What every command receives: where to write, the backend, the abort signal. */
import { existsSync } from 'node:fs'
import type { Store } from '@dreamdb/cas'
import type { Repository } from '@dreamdb/manifest'
import { CID } from 'multiformats/cid'
import { findConfigFile, readProjectConfig } from './config.js'
import { BackendNotFoundError, UsageError } from './errors.js'
import { colorFor, type Io, painter, type Style, toJson, write } from './io.js'

/** The embedded default backend: a folder in the current directory. */
export const DEFAULT_BACKEND = './.dreamdb'

export interface GlobalOptions {
  backend?: string
  color?: boolean
  json?: boolean
}

/** Where the backend URL came from. */
export type BackendSource = 'flag' | 'env' | 'config' | 'default'

export interface Context {
  io: Io
  signal: AbortSignal
  /**
   * The backend URL: --backend, else $DREAMDB_BACKEND, else the project's `.dreamdb.json`
   * (found by walking up from the current directory), else ./.dreamdb.
   */
  backend: string
  backendSource: BackendSource
  /** The project config file that was found (whether or not it chose the backend). */
  configPath: string | undefined
  /** Print JSON instead of text. */
  json: boolean
  /** Colour on stdout. */
  color: boolean
  /** Colour on stderr (progress bars, errors): the same rule applied to stderr. */
  errColor: boolean
  paint: (style: Style, text: string) => string
  /** Print one text line, or a JSON document (under --json). */
  out(text: string): Promise<void>
  /**
   * Print one JSON document for `verb`, tagged `"format": "dreamdb.<verb>/1"` so that scripts
   * can tell when a shape changes (a new version is a new number; fields are only added).
   */
  outJson(verb: string, value: object): Promise<void>
}

export function makeContext(io: Io, signal: AbortSignal, options: GlobalOptions): Context {
  const color = colorFor(io.stdout, io.env, options.color !== false)
  const overridden = options.backend !== undefined || Boolean(io.env.DREAMDB_BACKEND)
  // The file is read only when it decides the backend: a broken one does not stop a verb
  // given --backend or DREAMDB_BACKEND (init still needs to know that it exists).
  const config = overridden ? undefined : readProjectConfig(io.cwd)
  const [backend, backendSource]: [string, BackendSource] =
    options.backend !== undefined
      ? [options.backend, 'flag']
      : io.env.DREAMDB_BACKEND
        ? [io.env.DREAMDB_BACKEND, 'env']
        : config?.backend !== undefined
          ? [config.backend, 'config']
          : [DEFAULT_BACKEND, 'default']
  return {
    io,
    signal,
    backend,
    backendSource,
    configPath: overridden ? findConfigFile(io.cwd) : config?.path,
    json: options.json === true,
    color,
    errColor: colorFor(io.stderr, io.env, options.color !== false),
    paint: painter(color),
    out: (text) => write(io.stdout, `${text}\n`),
    outJson: (verb, value) => write(io.stdout, `${toJson({ format: `dreamdb.${verb}/1`, ...value })}\n`),
  }
}

/**
 * Open the backend and run `fn` with a repository on it, closing the store afterwards.
 * Verbs that only read (and snapshot/branch, which need an existing dataset) refuse a folder
 * that does not exist instead of creating an empty store there; only `init` creates one.
 */
export async function withRepository<T>(
  ctx: Context,
  fn: (repo: Repository, store: Store) => Promise<T>,
  { create = false, createBucket = false }: { create?: boolean; createBucket?: boolean } = {},
): Promise<T> {
  // Imported here, not at the top: --help, --version and a usage error never open a store.
  const [{ openStore, parseBackendUrl }, { Repository }] = await Promise.all([
    import('@dreamdb/cas'),
    import('@dreamdb/manifest'),
  ])
  const location = parseBackendUrl(ctx.backend, ctx.io.cwd)
  if (location.kind === 'fs' && !create && !existsSync(location.root)) {
    throw new BackendNotFoundError(location.root)
  }
  const store = await openStore(ctx.backend, { cwd: ctx.io.cwd, signal: ctx.signal, createBucket })
  try {
    return await fn(new Repository(store), store)
  } finally {
    await store.close()
  }
}

/** A ref name, or a manifest CID (anything that parses as one). */
export function sourceOf(value: string): string | CID {
  if (value.length >= 50 && /^b[a-z2-7]+$/.test(value)) {
    try {
      return CID.parse(value)
    } catch {}
  }
  return value
}

/** `--ref-name X` or a positional `X`: exactly one, or both the same. */
export function refArgument(positional: string | undefined, flag: string | undefined, verb: string): string {
  if (positional !== undefined && flag !== undefined && positional !== flag) {
    throw new UsageError(
      `${verb} got two refs: '${positional}' and --ref-name '${flag}'`,
      `give one: dreamdb ${verb} --ref-name <ref>`,
    )
  }
  const ref = flag ?? positional
  if (ref === undefined || ref === '') {
    throw new UsageError(`${verb} needs a ref`, `dreamdb ${verb} --ref-name <ref>; dreamdb refs lists them`)
  }
  return ref
}

/** A comma-separated list: trimmed, no empty items. */
export function list(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '')
}

/** A positive integer option. */
export function positiveInt(name: string): (value: string) => number {
  return (value) => {
    const n = Number(value)
    if (!Number.isSafeInteger(n) || n < 1 || !/^\d+$/.test(value.trim())) {
      throw new UsageError(`${name} must be a positive integer, not '${value}'`)
    }
    return n
  }
}
