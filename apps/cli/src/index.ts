/**
 * @packageDocumentation
 *
 * The `dreamdb` command (also `dreamdb-cli`): the process around `main` (`main.ts`, the one
 * error boundary, where an error becomes a line on stderr and an exit code).
 *
 * @example
 * ```sh
 * dreamdb init corpus --schema '[{"name":"label","family":"scalar","kind":"categorical"}]'
 * dreamdb inspect --ref-name corpus --json
 * ```
 */
import { EXIT } from './errors.js'
import { main } from './main.js'
import { quietProcess, stopOnSignals } from './process.js'

quietProcess(process)
const controller = stopOnSignals(process)
// `dreamdb export ... --out - | head`: a closed pipe is the reader saying it has enough.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(EXIT.ok)
  throw error
})

const io = { stdout: process.stdout, stderr: process.stderr, env: process.env, cwd: process.cwd() }

const { exitCode, immediate } = await main(process.argv.slice(2), io, controller.signal)
if (immediate) process.exit(exitCode)
// Let stdout drain before exiting (a pipe may still hold output).
process.exitCode = exitCode
