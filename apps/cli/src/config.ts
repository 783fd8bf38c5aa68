/**
 * The project's default backend: `.dreamdb.json` in the project directory, found by walking
 * up from the current directory (as git finds `.git`), so that every verb run anywhere in
 * the project uses the same store without `--backend` or `DREAMDB_BACKEND`. `dreamdb init`
 * writes it. Precedence: `--backend` > `$DREAMDB_BACKEND` > the config file > `./.dreamdb`.
 */
import { existsSync, readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { dirname, isAbsolute, join, relative, resolve } from 'node:path'
import { ConfigError } from './errors.js'

export const CONFIG_FILE = '.dreamdb.json'

export interface ProjectConfig {
  /** The file it was read from. */
  path: string
  /**
   * The backend URL. A relative folder path in the file is relative to the file's directory,
   * and is returned resolved, so a verb run from a subdirectory finds the same store.
   */
  backend: string | undefined
}

/** The nearest `.dreamdb.json` at or above `cwd`, or undefined. */
export function findConfigFile(cwd: string): string | undefined {
  for (let dir = resolve(cwd); ; dir = dirname(dir)) {
    const candidate = join(dir, CONFIG_FILE)
    if (existsSync(candidate)) return candidate
    if (dirname(dir) === dir) return undefined
  }
}

/** A URL with a scheme (`http://`, `s3://`, `file://`, `memory://`) rather than a folder path. */
const hasScheme = (url: string): boolean => /^[a-z][a-z0-9+.-]*:\/\//i.test(url)

/** Read the project config found from `cwd` (synchronously: it is read once, before a verb runs). */
export function readProjectConfig(cwd: string): ProjectConfig | undefined {
  const path = findConfigFile(cwd)
  if (path === undefined) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'))
  } catch (error) {
    throw new ConfigError(path, `is not valid JSON: ${(error as Error).message}`, { cause: error })
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new ConfigError(path, 'must be a JSON object such as {"backend": "http://127.0.0.1:9000/datasets"}')
  }
  const backend = (parsed as { backend?: unknown }).backend
  if (backend !== undefined && (typeof backend !== 'string' || backend === '')) {
    throw new ConfigError(path, '"backend" must be a non-empty string (a folder or a backend URL)')
  }
  return {
    path,
    backend:
      backend === undefined || hasScheme(backend) || isAbsolute(backend)
        ? backend
        : resolve(dirname(path), backend),
  }
}

/**
 * Save `backend` as the default of the project rooted at `dir`. A folder path is stored
 * relative to `dir` when it is inside it (the project can then be moved or cloned).
 */
export async function writeProjectConfig(dir: string, backend: string): Promise<string> {
  const path = join(dir, CONFIG_FILE)
  let stored = backend
  if (!hasScheme(backend)) {
    const rel = relative(dir, resolve(dir, backend))
    stored = rel === '' ? '.' : rel.startsWith('..') || isAbsolute(rel) ? resolve(dir, backend) : `./${rel}`
  }
  await writeFile(path, `${JSON.stringify({ backend: stored }, null, 2)}\n`, { flag: 'wx' })
  return path
}
