/**
 * The process around the program, set up once by the binary (`index.ts`) before any verb
 * runs: which signals stop it, and which of Node's process warnings reach stderr.
 */
import { InterruptedError, SIGNAL_EXIT, type StopSignal } from './errors.js'

/**
 * SIGINT (Ctrl-C) and SIGTERM abort the running verb through the returned controller's
 * signal, whatever the verb: it stops at its next await, releases what it holds (an ingest
 * its lease) and the error boundary prints one line and exits 130 or 143. A second signal
 * while the first is being handled exits at once, without cleaning up.
 *
 * The listeners stay installed (`on`, not `once`): a library that watches signals to clean
 * up after itself (Ink's `signal-exit`, loaded for the progress bar on a terminal) re-sends
 * the signal and kills the process when it finds itself the only listener left.
 */
export function stopOnSignals(proc: NodeJS.Process): AbortController {
  const controller = new AbortController()
  for (const name of Object.keys(SIGNAL_EXIT) as StopSignal[]) {
    proc.on(name, () => {
      if (controller.signal.aborted) {
        proc.stderr.write(`dreamdb: ${name} again: stopping now, without cleaning up\n`)
        proc.exit(SIGNAL_EXIT[name])
      }
      controller.abort(new InterruptedError(name))
    })
  }
  return controller
}

/**
 * Node's process warnings are for whoever develops the program, not for its user: the AWS
 * SDK's notice that its releases after January 2027 will need Node.js 22 (this one is pinned,
 * design/0001) printed nine lines on every S3 verb. They reach stderr with DREAMDB_DEBUG=1
 * only, in Node's own format.
 */
export function quietProcess(proc: NodeJS.Process): void {
  proc.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true'
  if (proc.env.DREAMDB_DEBUG) return
  // Node prints warnings through a 'warning' listener of its own; without it they are dropped.
  proc.removeAllListeners('warning')
  proc.on('warning', () => {})
}
