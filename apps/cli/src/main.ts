/**
 * The one error boundary: runs the program and turns what it throws into a line on stderr
 * and an exit code. The binary (`index.ts`) calls it with the process's streams; tests call
 * it in process with their own.
 */
import { classify, EXIT, ExitError, formatError } from './errors.js'
import { colorFor, type Io, painter } from './io.js'
import { run } from './program.js'

export interface Outcome {
  exitCode: number
  /** The program asked to exit at once (`ExitError`: help, version, a verb's own exit code). */
  immediate: boolean
}

export async function main(argv: string[], io: Io, signal: AbortSignal): Promise<Outcome> {
  try {
    await run(argv, io, signal)
    return { exitCode: EXIT.ok, immediate: false }
  } catch (error) {
    if (error instanceof ExitError) return { exitCode: error.exitCode, immediate: true }
    const classified = classify(error)
    const paint = painter(colorFor(io.stderr, io.env, !argv.includes('--no-color')))
    io.stderr.write(`${paint('red', formatError(classified))}\n`)
    if (classified.internal && io.env.DREAMDB_DEBUG) io.stderr.write(`${(error as Error)?.stack ?? error}\n`)
    return { exitCode: classified.exitCode, immediate: false }
  }
}
