/**
 * How a test's child processes load a workspace package: its build when current, otherwise
 * its sources through tsx. Starting tsx (and the esbuild service behind it) costs a process
 * 0.5-1.5 s of CPU on two loaded cores; the suites start dozens of such processes.
 */
import { existsSync, readdirSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'

/** The newest modification time of any file under `dir` (0 for none). */
function newestUnder(dir: string): number {
  let newest = 0
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs)
  return newest
}

/**
 * The module a child process imports for the package at `packageRoot`: `dist/index.js` when
 * it is newer than every file of `src/` (turbo builds a package before its tests run, see
 * turbo.json), else `src/index.ts`, which needs `nodeArgsFor`'s tsx. The same code either way.
 */
export function packageEntry(packageRoot: string): string {
  const built = join(packageRoot, 'dist', 'index.js')
  const current = existsSync(built) && statSync(built).mtimeMs > newestUnder(join(packageRoot, 'src'))
  if (!said.has(packageRoot)) {
    said.add(packageRoot)
    console.log(
      `test processes load ${basename(packageRoot)} from ${current ? 'its build (current)' : 'its sources through tsx (dist/ is older than src/)'}`,
    )
  }
  return current ? built : join(packageRoot, 'src', 'index.ts')
}
const said = new Set<string>()

/** Node's options for a child process that imports `modules`: tsx only when one is TypeScript. */
export function nodeArgsFor(...modules: string[]): string[] {
  return modules.some((module) => module.endsWith('.ts')) ? ['--import', 'tsx'] : []
}
