import { spawn } from 'node:child_process'
import { type Command, Option } from 'commander'
import { type Context, withRepository } from '../context.js'
import { UsageError } from '../errors.js'

export interface UiOptions {
  port: number
  /** Given only when the user typed --host: then a non-loopback address is allowed (with a warning). */
  host?: string
  open?: boolean
}

/** `--port`: 0 (any free port) to 65535. */
export function portArg(value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value.trim()) || n > 65_535)
    throw new UsageError(`--port must be 0 to 65535, not '${value}'`)
  return n
}

/**
 * The platform's "open this URL" command, detached so the viewer does not wait for it. An
 * opener that cannot start (none installed, a server without a desktop) is reported through
 * `failed`; the viewer serves on either way.
 */
function openBrowser(url: string, env: NodeJS.ProcessEnv, failed: (reason: string) => void): void {
  const [command, args] =
    process.platform === 'darwin'
      ? ['open', [url]]
      : process.platform === 'win32'
        ? ['cmd', ['/c', 'start', '', url]]
        : ['xdg-open', [url]]
  const child = spawn(command, args, { detached: true, stdio: 'ignore', env })
  child.on('error', (error) => failed(`${command}: ${error.message}`))
  child.unref()
}

/** Serve the viewer until the process is interrupted (Ctrl-C stops it). */
export async function ui(ctx: Context, options: UiOptions): Promise<void> {
  const host = options.host ?? '127.0.0.1'
  // Loaded when the viewer starts: the server and its API bring the dataset reader and Arrow,
  // which every other verb's start (and --help, which registers this one) would pay for.
  const { isLoopback, startViewer } = await import('../ui/server.js')
  await withRepository(ctx, async (repo, store) => {
    const viewer = await startViewer({
      repo,
      store,
      host,
      port: options.port,
      allowRemote: options.host !== undefined,
      signal: ctx.signal,
    })
    if (!isLoopback(host)) {
      ctx.io.stderr.write(
        `${ctx.paint('yellow', `dreamdb: warning: the viewer listens on ${host}: anyone who can reach it reads the whole store (no authentication)`)}\n`,
      )
    }
    if (ctx.json) await ctx.outJson('ui', { url: viewer.url, backend: store.url })
    else await ctx.out(`DreamDB viewer for ${store.url} on ${viewer.url}  (Ctrl-C stops it)`)
    if (options.open) {
      openBrowser(viewer.url, ctx.io.env, (reason) =>
        ctx.io.stderr.write(
          `${ctx.paint('yellow', `dreamdb: warning: could not open a browser (${reason}); open ${viewer.url} yourself`)}\n`,
        ),
      )
    }
    await new Promise<void>((resolve) => {
      if (ctx.signal.aborted) resolve()
      ctx.signal.addEventListener('abort', () => resolve(), { once: true })
    })
    await viewer.close()
  })
}

/** `dreamdb ui`: registered from program.ts in one line, its options and help kept here. */
export function registerUi(program: Command, contextOf: (command: Command) => Context): void {
  program
    .command('ui')
    .summary(
      'a local web viewer: refs and history, records and images, sweep comparison, inspect, diff, similar records',
    )
    .description(
      'Serve a web app and its read-only JSON API (under /api/, see design/0009-viewer.md) on 127.0.0.1 from this package: the history as a graph, pages of records with their images and fields (filtered by scalar fields without reading the whole dataset), a record with every field and layer, the agreement matrix of a sweep as a heat map whose cells open the records where two runs disagree, inspect, diff and nearest neighbours. Nothing is loaded from the network. It runs until Ctrl-C.',
    )
    .addOption(new Option('--port <port>', 'the port (0: any free one)').default(7373).argParser(portArg))
    .option(
      '--host <address>',
      'the address to listen on (default 127.0.0.1); anything but loopback exposes the store without authentication and is refused unless given here',
    )
    .option('--open', "open the viewer in the system's browser")
    .addOption(new Option('--json', 'print the URL as JSON ({"url", "backend"}) once listening'))
    .addHelpText(
      'after',
      `\nExamples:\n  $ dreamdb ui --open\n  $ dreamdb ui --backend ./.dreamdb --port 8080\n  $ dreamdb --backend http://127.0.0.1:9000/imagenet-100 ui\n`,
    )
    .action(async (options: UiOptions, command: Command) => {
      await ui(contextOf(command), options)
    })
}
