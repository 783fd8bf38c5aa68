#!/usr/bin/env node
// `pnpm bench <name> [args...]` runs bench/<name>.ts with tsx, inside a real MinIO started by
// tools/minio/minio.sh (which exports DREAMDB_TEST_S3_ENDPOINT and AWS_*), so that every
// benchmark can compare an S3 backend against a raw baseline on the same server.
// `pnpm bench` alone lists the benchmarks. Files in bench/ whose names start with `_` are
// shared helpers, not benchmarks.
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '..')
const benchDir = join(repoRoot, 'bench')
const minioScript = join(repoRoot, 'tools', 'minio', 'minio.sh')
const tsxBin = join(benchDir, 'node_modules', '.bin', 'tsx')

function availableBenchmarks() {
  return readdirSync(benchDir)
    .filter((file) => file.endsWith('.ts') && !file.endsWith('.d.ts') && !file.startsWith('_'))
    .map((file) => file.slice(0, -'.ts'.length))
    .sort()
}

/** The first sentence of the file's leading doc comment, so the listing explains itself. */
function summaryOf(name) {
  const source = readFileSync(join(benchDir, `${name}.ts`), 'utf8')
  const comment = /^\s*\/\*\*([\s\S]*?)\*\//.exec(source)?.[1] ?? ''
  const text = comment
    .split('\n')
    .map((line) => line.replace(/^\s*\*\s?/, '').trim())
    .filter((line) => line !== '')
    .join(' ')
  return text.split(/(?<=\.)\s/)[0] ?? ''
}

function printList(stream) {
  const names = availableBenchmarks()
  stream.write('usage: pnpm bench <name> [args...]\n\nbenchmarks (bench/<name>.ts):\n')
  const width = Math.max(0, ...names.map((name) => name.length))
  for (const name of names) stream.write(`  ${name.padEnd(width)}  ${summaryOf(name)}\n`)
}

const [name, ...benchArgs] = process.argv.slice(2)

if (name === undefined || name === '--help' || name === '-h') {
  printList(process.stdout)
  process.exit(0)
}
if (!availableBenchmarks().includes(name)) {
  process.stderr.write(`dreamdb: no benchmark named '${name}'\n\n`)
  printList(process.stderr)
  process.exit(2)
}
if (!existsSync(tsxBin)) {
  process.stderr.write(`dreamdb: ${tsxBin} is missing; run 'pnpm install' first\n`)
  process.exit(1)
}

// Run from bench/ so tsx picks up bench/tsconfig.json, whose paths point @dreamdb/* at the
// workspace sources: a benchmark measures the code as it is, not a stale dist/ build.
// --expose-gc lets the harness collect garbage before each timed pass, so one side does not
// pay for the other's garbage.
const child = spawn('bash', [minioScript, 'run', '--', tsxBin, `${name}.ts`, ...benchArgs], {
  cwd: benchDir,
  stdio: 'inherit',
  env: { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --expose-gc`.trim() },
})
for (const signal of ['SIGINT', 'SIGTERM']) {
  // Pass termination on (minio.sh's trap then stops MinIO) and stay alive to report the exit.
  process.on(signal, () => child.kill(signal))
}
child.on('exit', (code, signal) => {
  if (signal === null) process.exit(code ?? 1)
  // Die of the same signal, so a caller sees how the benchmark ended.
  process.removeAllListeners(signal)
  process.kill(process.pid, signal)
})
