/**
 * The command line: verbs, options, help with examples. Parsing only; each verb's work is in
 * `commands/`, and errors go up to the one boundary in `index.ts`.
 */
import { Command, CommanderError, Option } from 'commander'
import { compareRefs } from './commands/compare-refs.js'
import { diff } from './commands/diff.js'
import { exportRecords } from './commands/export.js'
import { head } from './commands/head.js'
import { init } from './commands/init.js'
import { inspect } from './commands/inspect.js'
import { log } from './commands/log.js'
import { branch, snapshot } from './commands/pin.js'
import { refs } from './commands/refs.js'
import {
  type Context,
  DEFAULT_BACKEND,
  type GlobalOptions,
  list,
  makeContext,
  positiveInt,
  refArgument,
} from './context.js'
import { EXIT, ExitError, UsageError } from './errors.js'
import type { Io } from './io.js'

export const VERSION = '0.1.0'

const EXIT_CODES = `Exit codes:
  0   ok
  1   a DreamDB error (bad value, damaged or unreachable store, write to a snapshot, ...)
  2   usage: unknown verb or option, missing or contradictory flags, malformed --schema
  3   not found: a ref, field, file or backend named on the command line
  4   conflict: the name or label is taken, or another writer moved the branch
  70  internal error (a bug; DREAMDB_DEBUG=1 prints the stack)
  130 interrupted

Errors are one line on stderr: dreamdb: <CODE>: <message>  (hint: <what to do>)

Environment:
  DREAMDB_BACKEND  the backend when --backend is not given (default ${DEFAULT_BACKEND})
  NO_COLOR         set to anything to turn colour off (it is only ever used on a terminal)
  DREAMDB_DEBUG    set to 1 to print the stack of an internal error`

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`
}

const json = () => new Option('--json', 'print JSON (for scripts and CI audits)')
const refName = () =>
  new Option('-r, --ref-name <ref>', 'a dataset, branch or snapshot name, or a manifest CID')

/**
 * Build the program. Actions receive a `Context` made from the global options, so that
 * `--backend` and `--no-color` work before or after the verb.
 */
export function buildProgram(io: Io, signal: AbortSignal): Command {
  const program = new Command('dreamdb')
  const contextOf = (command: Command): Context =>
    makeContext(io, signal, command.optsWithGlobals<GlobalOptions>())
  /** Wrap an action: commander passes the positional arguments, the options, then the command. */
  const action =
    <A extends unknown[]>(fn: (ctx: Context, ...args: A) => Promise<void>) =>
    async (...args: unknown[]) => {
      const command = args[args.length - 1] as Command
      await fn(contextOf(command), ...(args.slice(0, -1) as A))
    }

  program
    .description(
      'DreamDB: git for ML datasets. Snapshots are tags, branches are branches, every state is a manifest.',
    )
    .version(VERSION, '-V, --version')
    .option(
      '--backend <url>',
      `where the data lives: a folder, file:///abs/path, http(s)://host:port/<bucket>[/<prefix>], s3://<bucket> (default: $DREAMDB_BACKEND or ${DEFAULT_BACKEND})`,
    )
    .option('--no-color', 'no colour even on a terminal (NO_COLOR does the same)')
    .showSuggestionAfterError(true)
    .addHelpText(
      'after',
      `${examples(
        `dreamdb init corpus --schema '[{"name":"label","family":"scalar","kind":"categorical"}]'`,
        'dreamdb refs',
        'dreamdb snapshot prep-v1 --from corpus',
        'dreamdb inspect --ref-name prod-2026-05-15-abc --json',
        'dreamdb compare-refs --refs sweep/a,sweep/b,sweep/c --field prediction',
        'dreamdb --backend http://127.0.0.1:9000/imagenet-100 refs',
      )}\n${EXIT_CODES}\n`,
    )

  program
    .command('init')
    .summary('create a dataset')
    .description('Create a dataset: a branch named <name> at an empty manifest with the given schema.')
    .argument('<name>', 'the dataset (its main branch)')
    .requiredOption(
      '--schema <json|file>',
      'the fields, as inline JSON or a JSON file: [{"name":..., "family":"binary"|"embedding"|"scalar", ...}] or {"fields":[...]}',
    )
    .addOption(json())
    .addHelpText(
      'after',
      `${examples(
        `dreamdb init corpus --schema '[{"name":"image","family":"binary","media":"image"},{"name":"embedding","family":"embedding","dim":512},{"name":"label","family":"scalar","kind":"categorical"},{"name":"split","family":"scalar","kind":"categorical"}]'`,
        'dreamdb init corpus --schema schema.json --backend http://127.0.0.1:9000/datasets',
      )}
Field families:
  binary     {"name":"image","family":"binary","media":"image"|"video"|"audio"|"bytes"}
  embedding  {"name":"embedding","family":"embedding","dim":512, "metric":"cosine"|"l2"|"ip"}
  scalar     {"name":"label","family":"scalar","kind":"categorical"|"string"|"int"|"float"|"bool"|"timestamp"}
`,
    )
    .action(action((ctx, name: string, options: { schema: string }) => init(ctx, name, options)))

  program
    .command('refs')
    .summary('list datasets, branches and snapshots')
    .description('List refs (datasets, branches, snapshots) with their kind, manifest and record count.')
    .argument('[prefix]', 'only refs whose names start with this')
    .addOption(json())
    .addHelpText('after', examples('dreamdb refs', 'dreamdb refs sweep/ --json'))
    .action(action((ctx, prefix: string | undefined) => refs(ctx, prefix)))

  program
    .command('snapshot')
    .summary('pin a state under a label that never moves')
    .description(
      'Pin the current state of a ref under <label>. Free to create; never moves. The same label on the same state is a no-op.',
    )
    .argument('<label>', 'the snapshot label')
    .requiredOption('--from <ref>', 'the ref (or manifest CID) whose state to pin')
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb snapshot model-v2-prep --from imagenet-100',
        'dreamdb snapshot prod-2026-05-15-abc --from sweep/lr0.01 --json',
      ),
    )
    .action(action((ctx, label: string, options: { from: string }) => snapshot(ctx, label, options)))

  program
    .command('branch')
    .summary('start a branch at a state')
    .description('Create a writable branch <name> at the state of a ref. One small write; no data is copied.')
    .argument('<name>', 'the new branch')
    .requiredOption('--from <ref>', 'the ref (or manifest CID) to branch from')
    .addOption(json())
    .addHelpText('after', examples('dreamdb branch sweep/lp-lr0.001-bs128 --from sweep-baseline'))
    .action(action((ctx, name: string, options: { from: string }) => branch(ctx, name, options)))

  program
    .command('log')
    .summary('the history behind a ref')
    .description('The manifests behind a ref, newest first, with what each commit did and the refs at each.')
    .argument('[ref]', 'the same as --ref-name')
    .addOption(refName())
    .addOption(
      new Option('-n, --limit <count>', 'at most this many entries').argParser(positiveInt('--limit')),
    )
    .addOption(json())
    .addHelpText(
      'after',
      examples('dreamdb log --ref-name corpus', 'dreamdb log --ref-name corpus -n 5 --json'),
    )
    .action(
      action((ctx, positional: string | undefined, options: { refName?: string; limit?: number }) =>
        log(ctx, refArgument(positional, options.refName, 'log'), options),
      ),
    )

  program
    .command('inspect')
    .summary('the exact state behind a ref: what data trained this model?')
    .description(
      'The exact state behind a ref: its manifest, the history back to the root, schema and layers, record counts (per split when the dataset has a split field), the refs that point into this history and those built on it, and every object it references. --json gives all of it for CI audits.',
    )
    .argument('[ref]', 'the same as --ref-name')
    .addOption(refName())
    .option('--verify', 'read back every object this state references and check it against its CID')
    .option('--no-splits', 'skip counting records per split (which reads the split column)')
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb inspect --ref-name prod-2026-05-15-abc',
        'dreamdb inspect --ref-name prod-2026-05-15-abc --verify --json > audit.json',
      ),
    )
    .action(
      action(
        (
          ctx,
          positional: string | undefined,
          options: { refName?: string; verify?: boolean; splits?: boolean },
        ) =>
          inspect(ctx, refArgument(positional, options.refName, 'inspect'), {
            ...(options.verify !== undefined ? { verify: options.verify } : {}),
            ...(options.splits !== undefined ? { splits: options.splits } : {}),
          }),
      ),
    )

  program
    .command('diff')
    .summary('what changed between two states')
    .description(
      'Fields and layers added, removed or redefined, and the records and buckets only one side holds (metadata only).',
    )
    .argument('<a>', 'a ref or manifest CID')
    .argument('<b>', 'a ref or manifest CID')
    .addOption(json())
    .addHelpText(
      'after',
      examples('dreamdb diff prep-v1 corpus', 'dreamdb diff sweep-baseline sweep/lr0.01 --json'),
    )
    .action(action((ctx, a: string, b: string) => diff(ctx, a, b)))

  program
    .command('head')
    .summary('print the first records')
    .description(
      'Print the first records of a ref. Binary values show as byte counts, embeddings abbreviated (JSON has them whole).',
    )
    .argument('[ref]', 'the same as --ref-name')
    .addOption(refName())
    .addOption(
      new Option('-n, --records <count>', 'how many records').default(5).argParser(positiveInt('-n')),
    )
    .option('--fields <a,b>', 'only these fields and layers (default: all)', list)
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb head --ref-name corpus',
        'dreamdb head --ref-name sweep/lr0.01 -n 3 --fields label,prediction --json',
      ),
    )
    .action(
      action(
        (
          ctx,
          positional: string | undefined,
          options: { refName?: string; records: number; fields?: string[] },
        ) =>
          head(ctx, refArgument(positional, options.refName, 'head'), {
            n: options.records,
            ...(options.fields ? { fields: options.fields } : {}),
          }),
      ),
    )

  program
    .command('export')
    .summary('write the records as an Arrow IPC stream or JSON lines')
    .description(
      'Write every record of a ref (_anchor plus fields and layers) as an Arrow IPC stream or as JSON lines (binary as base64, anchors as decimal strings). A file is written under a temporary name and renamed when complete.',
    )
    .argument('[ref]', 'the same as --ref-name')
    .addOption(refName())
    .addOption(
      new Option('--format <format>', 'arrow (IPC stream) or jsonl')
        .choices(['arrow', 'jsonl'])
        .makeOptionMandatory(),
    )
    .requiredOption('--out <file|->', "the output file, or '-' for stdout")
    .option('--fields <a,b>', 'only these fields and layers (default: all)', list)
    .option('--force', 'replace the output file if it exists')
    .addOption(
      new Option('--batch-size <records>', 'records per Arrow record batch')
        .default(4096)
        .argParser(positiveInt('--batch-size')),
    )
    .addOption(
      new Option('--json', 'print a JSON summary (records, fields, manifest) when writing to a file'),
    )
    .addHelpText(
      'after',
      examples(
        'dreamdb export --ref-name prep-v1 --format arrow --out prep-v1.arrows',
        'dreamdb export --ref-name corpus --format jsonl --fields label,split --out - | head',
      ),
    )
    .action(
      action(
        (
          ctx,
          positional: string | undefined,
          options: {
            refName?: string
            format: 'arrow' | 'jsonl'
            out: string
            fields?: string[]
            force?: boolean
            batchSize: number
          },
        ) =>
          exportRecords(ctx, refArgument(positional, options.refName, 'export'), {
            format: options.format,
            out: options.out,
            batchSize: options.batchSize,
            ...(options.fields ? { fields: options.fields } : {}),
            ...(options.force ? { force: true } : {}),
          }),
      ),
    )

  program
    .command('compare-refs')
    .summary('pairwise agreement of a field across refs (a heat map)')
    .description(
      'Join a field (a layer such as prediction, or a base field) of several refs by record and print the pairwise agreement matrix: on a terminal an Ink heat map that fits its width (the extremes as a list when there are too many refs), plain text in a pipe, JSON with --json.',
    )
    .option('--refs <a,b,c>', 'the refs to compare', list)
    .option('--prefix <prefix>', 'compare every ref whose name starts with this')
    .option('--field <name>', 'the field or layer to compare', 'prediction')
    .addOption(
      new Option(
        '--width <columns>',
        'lay the matrix out for this many columns (default: the terminal, or 80)',
      ).argParser(positiveInt('--width')),
    )
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb compare-refs --refs sweep/lr0.001,sweep/lr0.01,sweep/lr0.1 --field prediction',
        'dreamdb compare-refs --prefix sweep/ --json',
      ),
    )
    .action(
      action((ctx, options: { refs?: string[]; prefix?: string; field: string; width?: number }) =>
        compareRefs(ctx, {
          field: options.field,
          ...(options.refs ? { refs: options.refs } : {}),
          ...(options.prefix !== undefined ? { prefix: options.prefix } : {}),
          ...(options.width !== undefined ? { width: options.width } : {}),
        }),
      ),
    )

  configure(program, io)
  return program
}

/** Every command: throw instead of exiting, print help to stdout, errors through the boundary. */
function configure(command: Command, io: Io): void {
  command.exitOverride()
  command.configureOutput({
    writeOut: (text) => io.stdout.write(text),
    writeErr: (text) => io.stderr.write(text),
    // Commander's own error lines are replaced by ours (see `run`).
    outputError: () => {},
  })
  for (const sub of command.commands) configure(sub, io)
}

/** Parse and run. Throws `ExitError` for help and version, `UsageError` for a bad command line. */
export async function run(argv: string[], io: Io, signal: AbortSignal): Promise<void> {
  const program = buildProgram(io, signal)
  try {
    await program.parseAsync(argv, { from: 'user' })
  } catch (error) {
    if (error instanceof CommanderError) {
      if (error.exitCode === 0) throw new ExitError(EXIT.ok)
      if (error.code === 'commander.help' || error.code === 'commander.helpDisplayed')
        throw new ExitError(EXIT.usage)
      const message = error.message.replace(/^error: /, '')
      const verb = argv.find((arg) => program.commands.some((c) => c.name() === arg))
      throw new UsageError(message, verb ? `dreamdb ${verb} --help` : 'dreamdb --help')
    }
    throw error
  }
}
