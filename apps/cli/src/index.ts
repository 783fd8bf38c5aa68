/**
 * @packageDocumentation
 *
 * The `dreamdb` command (also `dreamdb-cli`). This file is the one error boundary: commands
 * throw, and only here does an error become a line on stderr and an exit code.
 *
 * @example
 * ```sh
 * dreamdb init corpus --schema '[{"name":"label","family":"scalar","kind":"categorical"}]'
 * dreamdb inspect --ref-name corpus --json
 * ```
 */
import { classify, EXIT, ExitError, formatError } from './errors.js'
import { colorFor, painter } from './io.js'
import { run } from './program.js'

const controller = new AbortController()
process.once('SIGINT', () => controller.abort())
// `dreamdb export ... --out - | head`: a closed pipe is the reader saying it has enough.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(EXIT.ok)
  throw error
})

const io = { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() }

try {
  await run(process.argv.slice(2), io, controller.signal)
} catch (error) {
  if (error instanceof ExitError) process.exit(error.exitCode)
  const classified = classify(error)
  const paint = painter(colorFor(process.stderr, process.env, !process.argv.includes('--no-color')))
  process.stderr.write(`${paint('red', formatError(classified))}\n`)
  if (classified.internal && process.env.DREAMDB_DEBUG)
    process.stderr.write(`${(error as Error)?.stack ?? error}\n`)
  // Let stdout drain before exiting (a pipe may still hold output).
  process.exitCode = classified.exitCode
}
