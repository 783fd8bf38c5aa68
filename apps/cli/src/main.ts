/**
 * The one error boundary: runs the program and turns what it throws into a line on stderr
 * and an exit code (and, under --json, a JSON error document on stdout, so that a script
 * reading stdout always gets one document). The binary (`index.ts`) calls it with the
 * process's streams; tests call it in process with their own.
 */
import { classify, EXIT, ExitError, formatError } from './errors.js'
import { colorFor, type Io, painter, toJson, write } from './io.js'
import { run } from './program.js'

export interface Outcome {
  exitCode: number
  /** The program asked to exit at once (`ExitError`: help, version, a verb's own exit code). */
  immediate: boolean
}

/** `--json` anywhere before a `--` (the verbs that print JSON all take it). */
const wantsJson = (argv: string[]): boolean => {
  const end = argv.indexOf('--')
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json')
}

export async function main(argv: string[], io: Io, signal: AbortSignal): Promise<Outcome> {
  try {
    await run(argv, io, signal)
    return { exitCode: EXIT.ok, immediate: false }
  } catch (error) {
    if (error instanceof ExitError) return { exitCode: error.exitCode, immediate: !error.settled }
    const classified = classify(error)
    const paint = painter(colorFor(io.stderr, io.env, !argv.includes('--no-color')))
    io.stderr.write(`${paint('red', formatError(classified))}\n`)
    if (classified.internal && io.env.DREAMDB_DEBUG) io.stderr.write(`${(error as Error)?.stack ?? error}\n`)
    // A verb that printed its report before failing (inspect --verify) has said it all on stdout.
    const reported = (error as { reported?: unknown } | null)?.reported === true
    if (wantsJson(argv) && !reported) {
      const { code, message, hint, exitCode } = classified
      await write(
        io.stdout,
        `${toJson({ format: 'dreamdb.error/1', error: { code, message, ...(hint ? { hint } : {}), exitCode } })}\n`,
      ).catch(() => {})
    }
    return { exitCode: classified.exitCode, immediate: false }
  }
}
