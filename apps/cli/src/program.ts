/**
 * The command line: verbs, options, help with examples. Parsing only; each verb's work is in
 * `commands/`, and errors go up to the one boundary in `index.ts`.
 */
import { readFileSync } from 'node:fs'
import { Command, CommanderError, Option } from 'commander'
import type { CompactCommandOptions } from './commands/compact.js'
import type { DropLayerCommandOptions } from './commands/drop-layer.js'
import type { AddFieldsCommandOptions, DropFieldCommandOptions } from './commands/fields.js'
import type { IngestCommandOptions } from './commands/ingest.js'
import type { MergeCommandOptions } from './commands/merge.js'
import type { MigrateCommandOptions } from './commands/migrate.js'
import type { RestoreCommandOptions } from './commands/restore.js'
import type { SearchCommandOptions } from './commands/search.js'
import { registerUi } from './commands/ui.js'
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

/**
 * This package's version, from its package.json (one folder above both src/ and the built
 * dist/), so that `changeset version` is the only place a release changes it.
 */
export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version

const EXIT_CODES = `Exit codes:
  0   ok
  1   a DreamDB error (bad value, damaged store, write to a snapshot, ...)
  2   usage: unknown verb or option, missing or contradictory flags, malformed --schema
  3   not found: a ref, field, file or backend named on the command line
  4   conflict: the name or label is taken, another writer moved the branch, or
      an older DreamDB's ingest into the dataset is running (ERR_INGEST_LOCKED)
  5   fsck: the store is damaged (a missing or corrupt object reached from a ref, or an
      unreadable ref)
  70  internal error (a bug; DREAMDB_DEBUG=1 prints the stack)
  75  unavailable: the store did not answer in time or cannot be reached (ERR_CAS_TIMEOUT,
      ERR_CAS_UNREACHABLE, ERR_CAS_OUTCOME_UNKNOWN, ERR_MANIFEST_COMMIT_UNKNOWN); run it
      again later (after a write of unknown outcome, check dreamdb log first)
  130 interrupted (Ctrl-C, SIGINT); 143 terminated (SIGTERM)
  diff --exit-code exits 1 when the states differ, like git diff --exit-code

Errors are one line on stderr: dreamdb: <CODE>: <message>  (hint: <what to do>); with
--json, also a document on stdout: {"format":"dreamdb.error/1","error":{"code","message",...}}

The backend: --backend, else $DREAMDB_BACKEND, else "backend" in the project's .dreamdb.json
(the nearest one at or above the current directory; dreamdb init writes it), else ${DEFAULT_BACKEND}.

Environment:
  DREAMDB_BACKEND  the backend when --backend is not given
  NO_COLOR         set to anything to turn colour off (it is only ever used on a terminal)
  DREAMDB_DEBUG    set to 1 to print the stack of an internal error (and Node's
                   process warnings, otherwise kept off stderr)
  DREAMDB_S3_TIMEOUT_MS, DREAMDB_S3_CONNECT_TIMEOUT_MS, DREAMDB_S3_ATTEMPTS
                   S3 deadlines: silence allowed per request (30000), connection time
                   (10000), attempts of a read or object put (3)`

/** `48x192` -> [48, 192]. */
function sizeArg(value: string): [number, number] {
  const m = /^(\d+)x(\d+)$/.exec(value.trim())
  if (m === null || Number(m[1]) < 1 || Number(m[2]) < 1) {
    throw new UsageError(`--model-input-size must be HEIGHTxWIDTH, e.g. 224x224, not '${value}'`)
  }
  return [Number(m[1]), Number(m[2])]
}

/** `0.5,0.5,0.5` -> three numbers (per channel R, G, B). */
function triple(name: string, positive: boolean): (value: string) => [number, number, number] {
  return (value) => {
    const parts = value.split(',').map((s) => Number(s.trim()))
    if (parts.length !== 3 || !parts.every((x) => Number.isFinite(x) && (!positive || x > 0))) {
      throw new UsageError(
        `${name} takes three ${positive ? 'positive ' : ''}numbers (R,G,B), not '${value}'`,
      )
    }
    return parts as [number, number, number]
  }
}

function examples(...lines: string[]): string {
  return `\nExamples:\n${lines.map((l) => `  $ ${l}`).join('\n')}\n`
}

/** The encodings `migrate --algorithm` takes (an IVF + RaBitQ metric, or back to plain vectors). */
export const ALGORITHMS = ['dreamdb.ivf-cosine', 'dreamdb.ivf-l2', 'dreamdb.ivf-ip', 'float32'] as const

/**
 * Each verb's implementation, imported when the verb runs. Every `dreamdb` process pays for
 * what it loads before it does anything (Node 20 has no compile cache): Arrow, the dataset
 * reader, parquet-wasm and Ink cost `--version` and `refs` hundreds of milliseconds they do
 * not use (issues #13, #15). The options and help stay here, so `--help` lists every verb.
 */
const VERBS = {
  compact: () => import('./commands/compact.js'),
  'compare-refs': () => import('./commands/compare-refs.js'),
  diff: () => import('./commands/diff.js'),
  'drop-layer': () => import('./commands/drop-layer.js'),
  export: () => import('./commands/export.js'),
  fields: () => import('./commands/fields.js'),
  head: () => import('./commands/head.js'),
  ingest: () => import('./commands/ingest.js'),
  init: () => import('./commands/init.js'),
  inspect: () => import('./commands/inspect.js'),
  lifecycle: () => import('./commands/lifecycle.js'),
  log: () => import('./commands/log.js'),
  merge: () => import('./commands/merge.js'),
  migrate: () => import('./commands/migrate.js'),
  pin: () => import('./commands/pin.js'),
  refs: () => import('./commands/refs.js'),
  restore: () => import('./commands/restore.js'),
  search: () => import('./commands/search.js'),
}
const load = <K extends keyof typeof VERBS>(name: K): ReturnType<(typeof VERBS)[K]> =>
  VERBS[name]() as ReturnType<(typeof VERBS)[K]>

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
      `where the data lives: a folder, file:///abs/path, http(s)://host:port/<bucket>[/<prefix>], s3://<bucket> (default: $DREAMDB_BACKEND, else the project's .dreamdb.json, else ${DEFAULT_BACKEND})`,
    )
    .option('--no-color', 'no colour even on a terminal (NO_COLOR does the same)')
    .showSuggestionAfterError(true)
    // Each verb's --help lists --backend and --no-color too (they work before or after the verb).
    .configureHelp({ showGlobalOptions: true })
    .addHelpText(
      'after',
      `${examples(
        `dreamdb init corpus --schema '[{"name":"label","family":"scalar","kind":"categorical"}]'`,
        'dreamdb refs',
        'dreamdb ingest --root ./imagenet-100 --dataset-name imagenet-100 --splits train,validation --embedding-column clip --ivf --rabitq',
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
    .option('--create-bucket', 'S3: create the bucket if it does not exist (needs s3:CreateBucket)')
    .option(
      '--no-save-config',
      `do not record the backend as the project default in ./.dreamdb.json (it is written when no project config exists yet)`,
    )
    .addOption(json())
    .addHelpText(
      'after',
      `${examples(
        `dreamdb init corpus --schema '[{"name":"image","family":"binary","media":"image"},{"name":"embedding","family":"embedding","dim":512},{"name":"label","family":"scalar","kind":"categorical"},{"name":"split","family":"scalar","kind":"categorical"}]'`,
        'dreamdb init corpus --schema schema.json --backend http://127.0.0.1:9000/datasets --create-bucket',
      )}
The backend it was given becomes the project's default: init writes ./.dreamdb.json
({"backend": "..."}) unless a .dreamdb.json is found at or above the current directory, and
later verbs run here or below use it without --backend (--backend and DREAMDB_BACKEND win).

Field families:
  binary     {"name":"image","family":"binary","media":"image"|"video"|"audio"|"bytes"}
  embedding  {"name":"embedding","family":"embedding","dim":512, "metric":"cosine"|"l2"|"ip"}
  scalar     {"name":"label","family":"scalar","kind":"categorical"|"string"|"int"|"float"|"bool"|"timestamp"}
`,
    )
    .action(
      action((ctx, name: string, options: { schema: string; createBucket?: boolean; saveConfig?: boolean }) =>
        load('init').then(({ init }) => init(ctx, name, options)),
      ),
    )

  program
    .command('ingest')
    .summary('ingest Hugging Face parquet shards (images, labels, embeddings); resumable')
    .description(
      "Read Hugging Face-style parquet shards (<split>-00000-of-00017.parquet under --root or --root/data, with an image {bytes, path} column and a label) into a dataset with the fields image, embedding, label and split, plus every other scalar column of the shards (id, caption, ...), the image's path (image_path) and each record's source_shard and source_row (--columns core leaves those out), creating it if needed. Embeddings come from a column of the shards or from an ONNX image model run in process. Anchors follow the source order (shard, row). Each commit appends a range of one shard's rows and records it in its metadata: interrupted and run again, ingest appends only what is missing, never a record twice, with the anchors the first run would have given. Progress: a bar on a terminal, a line per second otherwise (stderr).",
    )
    .requiredOption('--root <dir>', 'the folder of parquet shards (or whose data/ folder holds them)')
    .requiredOption('--dataset-name <name>', 'the dataset to create or append to')
    .requiredOption('--splits <a,b>', 'the splits to ingest, e.g. train,validation', list)
    .option(
      '--embedding-column <column>',
      "the shards' column of vectors (a list of floats; default: embedding)",
    )
    .option('--model <file.onnx>', 'compute the embeddings with this ONNX image model (onnxruntime-node)')
    .option(
      '--model-output <tensor>',
      "the model's output, or any tensor of its graph, to use as the embedding",
    )
    .addOption(
      new Option(
        '--model-input-size <HxW>',
        "the model's input size when it is not fixed (default 224x224)",
      ).argParser(sizeArg),
    )
    .addOption(
      new Option(
        '--model-resize <how>',
        'fit images to the input: scale and crop the centre, or stretch',
      ).choices(['center-crop', 'stretch']),
    )
    .addOption(
      new Option(
        '--model-mean <r,g,b>',
        "per-channel mean after scaling to [0,1] (default ImageNet's)",
      ).argParser(triple('--model-mean', false)),
    )
    .addOption(
      new Option('--model-std <r,g,b>', "per-channel standard deviation (default ImageNet's)").argParser(
        triple('--model-std', true),
      ),
    )
    .addOption(
      new Option('--model-batch <images>', 'images per model run (default 32)').argParser(
        positiveInt('--model-batch'),
      ),
    )
    .option('--ivf', 'after the append, train an IVF index on the embeddings (with --rabitq)')
    .option('--rabitq', 'and encode them with RaBitQ (dreamdb.ivf-cosine; full vectors kept for rerank)')
    .addOption(
      new Option('--bits <n>', 'RaBitQ bits per dimension, 1 to 8 (default 1)').argParser(
        positiveInt('--bits'),
      ),
    )
    .addOption(
      new Option('--batch-records <n>', 'rows per commit: the unit of resumption')
        .default(1024)
        .argParser(positiveInt('--batch-records')),
    )
    .addOption(
      new Option(
        '--concurrency <n>',
        'chunks read and embedded ahead; the next one is written while the one before commits (they commit one after another, in source order within this ingest)',
      )
        .default(2)
        .argParser(positiveInt('--concurrency')),
    )
    .addOption(
      new Option(
        '--wait [seconds]',
        "if an older DreamDB's ingest (one without shard claims) into the dataset is running, wait for it (default 600 s) instead of failing with ERR_INGEST_LOCKED",
      ).argParser(positiveInt('--wait')),
    )
    .addOption(
      new Option(
        '--lease-ttl <seconds>',
        "how long this ingest's claim on a shard outlives its last renewal (renewed every quarter of it)",
      )
        .default(60)
        .argParser(positiveInt('--lease-ttl')),
    )
    .addOption(
      new Option(
        '--columns <which>',
        'all: every source column a scalar field can hold, the image path, source shard and row (default); core: image, embedding, label and split only',
      ).choices(['all', 'core']),
    )
    .option('--no-progress', 'no progress bar or lines on stderr')
    .addOption(new Option('--json', 'print a JSON summary when done (progress still goes to stderr)'))
    .addHelpText(
      'after',
      `${examples(
        'dreamdb ingest --root ./imagenet-100 --dataset-name imagenet-100 --splits train,validation --embedding-column clip --ivf --rabitq',
        'dreamdb ingest --root ./mnist-hf --dataset-name mnist --splits train,test --model mobilenet.onnx --model-output features',
        'dreamdb --backend http://127.0.0.1:9000/imagenet-100 ingest --root ./imagenet-100 --dataset-name imagenet-100 --splits train --model clip-vit-b32-visual.onnx --json',
      )}
Resuming: run the same command again after an interruption; the rows already committed
(recorded in each commit's metadata, see dreamdb log) are skipped.

Many at once: run the same command on several machines (or several times on one) to split
the work. Each ingest claims a shard at a time (renewed every 15 s, expiring after 60 s),
writes its rows, and takes the next free one; all commit to the one dataset. An ingest
with nothing left to claim waits for the others' shards, and returns when all are in. The
shards of an ingest that was killed are taken over at once on the same host, and after
their claims expire elsewhere.
`,
    )
    .action(action(async (ctx, options: IngestCommandOptions) => (await load('ingest')).ingest(ctx, options)))

  program
    .command('refs')
    .summary('list datasets, branches and snapshots')
    .description('List refs (datasets, branches, snapshots) with their kind, manifest and record count.')
    .argument('[prefix]', 'only refs whose names start with this')
    .addOption(json())
    .addHelpText('after', examples('dreamdb refs', 'dreamdb refs sweep/ --json'))
    .action(action(async (ctx, prefix: string | undefined) => (await load('refs')).refs(ctx, prefix)))

  program
    .command('snapshot')
    .summary('pin a state under a label that never moves')
    .description(
      'Pin the current state of a ref under <label>. Free to create; never moves. The same label on the same state is a no-op.',
    )
    .argument('<label>', 'the snapshot label')
    .option('--from <ref>', 'the ref (or manifest CID) whose state to pin')
    .option('-d, --delete', 'delete the snapshot instead (needs --force); its objects stay until dreamdb gc')
    .option('--force', 'with --delete: really delete a snapshot')
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb snapshot model-v2-prep --from imagenet-100',
        'dreamdb snapshot prod-2026-05-15-abc --from sweep/lr0.01 --json',
        'dreamdb snapshot old-prep --delete --force',
      ),
    )
    .action(
      action(async (ctx, label: string, options: { from?: string; delete?: boolean; force?: boolean }) => {
        if (options.delete) {
          if (options.from !== undefined) throw new UsageError('--delete takes no --from')
          const { deleteRefCommand } = await load('lifecycle')
          return deleteRefCommand(ctx, label, { kind: 'snapshot', force: options.force === true })
        }
        if (options.from === undefined) throw new UsageError("required option '--from <ref>' not specified")
        return (await load('pin')).snapshot(ctx, label, { from: options.from })
      }),
    )

  program
    .command('branch')
    .summary('start a branch at a state')
    .description('Create a writable branch <name> at the state of a ref. One small write; no data is copied.')
    .argument('<name>', 'the new branch')
    .option('--from <ref>', 'the ref (or manifest CID) to branch from')
    .option(
      '-d, --delete',
      'delete the branch instead, by compare-and-swap: a commit landing meanwhile makes it fail (ERR_MANIFEST_REF_MOVED, exit 4)',
    )
    .option('--expect <manifest>', 'with --delete: only if the branch is still at this manifest')
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb branch sweep/lp-lr0.001-bs128 --from sweep-baseline',
        'dreamdb branch sweep/lp-lr0.001-bs128 --delete',
      ),
    )
    .action(
      action(async (ctx, name: string, options: { from?: string; delete?: boolean; expect?: string }) => {
        if (options.delete) {
          if (options.from !== undefined) throw new UsageError('--delete takes no --from')
          const { deleteRefCommand } = await load('lifecycle')
          return deleteRefCommand(ctx, name, {
            kind: 'branch',
            ...(options.expect !== undefined ? { expect: options.expect } : {}),
          })
        }
        if (options.expect !== undefined) throw new UsageError('--expect goes with --delete')
        if (options.from === undefined) throw new UsageError("required option '--from <ref>' not specified")
        return (await load('pin')).branch(ctx, name, { from: options.from })
      }),
    )

  program
    .command('fsck')
    .summary('check that the store is whole')
    .description(
      'Walk everything every ref reaches (user refs and hidden ones such as ingest leases) and check that each object exists and verifies. Reports missing, corrupt and unreachable objects and leftover temporary files, with counts and bytes. Writes nothing. Exits 0 when whole, 5 when damaged.',
    )
    .option('--metadata-only', 'read manifests and tree nodes; check data objects only by their presence')
    .addOption(json())
    .addHelpText('after', examples('dreamdb fsck', 'dreamdb fsck --json > fsck.json || echo damaged'))
    .action(
      action(async (ctx, options: { metadataOnly?: boolean }) =>
        (await load('lifecycle')).fsckCommand(ctx, options),
      ),
    )

  program
    .command('gc')
    .summary('delete objects no ref reaches (dry run unless --apply)')
    .description(
      'Garbage collection: mark from every ref, list the store, mark again, then delete objects no ref reaches that are older than the grace period, and temporary files of dead writers. A dry run unless --apply. Stops without deleting anything if a ref or an object it reaches cannot be read (run dreamdb fsck).',
    )
    .option('--apply', 'delete (without it, only report what would be deleted)')
    .option(
      '--grace <duration>',
      'keep unreachable objects younger than this: 7d, 36h, 90m; at least 1h',
      '7d',
    )
    .addOption(json())
    .addHelpText(
      'after',
      examples('dreamdb gc', 'dreamdb gc --apply', 'dreamdb gc --apply --grace 2d --json'),
    )
    .action(
      action(async (ctx, options: { apply?: boolean; grace?: string }) =>
        (await load('lifecycle')).gcCommand(ctx, options),
      ),
    )

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
      action(async (ctx, positional: string | undefined, options: { refName?: string; limit?: number }) => {
        const ref = refArgument(positional, options.refName, 'log')
        return (await load('log')).log(ctx, ref, options)
      }),
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
        async (
          ctx,
          positional: string | undefined,
          options: { refName?: string; verify?: boolean; splits?: boolean },
        ) => {
          const ref = refArgument(positional, options.refName, 'inspect')
          return (await load('inspect')).inspect(ctx, ref, {
            ...(options.verify !== undefined ? { verify: options.verify } : {}),
            ...(options.splits !== undefined ? { splits: options.splits } : {}),
          })
        },
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
    .option('--exit-code', 'exit 1 when the states differ, 0 when they do not (as git diff --exit-code)')
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb diff prep-v1 corpus',
        'dreamdb diff sweep-baseline sweep/lr0.01 --json',
        'dreamdb diff prod-1 corpus --exit-code > /dev/null || echo "corpus moved since prod-1"',
      ),
    )
    .action(
      action(async (ctx, a: string, b: string, options: { exitCode?: boolean }) =>
        (await load('diff')).diff(ctx, a, b, options),
      ),
    )

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
        async (
          ctx,
          positional: string | undefined,
          options: { refName?: string; records: number; fields?: string[] },
        ) => {
          const ref = refArgument(positional, options.refName, 'head')
          return (await load('head')).head(ctx, ref, {
            n: options.records,
            ...(options.fields ? { fields: options.fields } : {}),
          })
        },
      ),
    )

  program
    .command('export')
    .summary('write the records as an Arrow IPC stream, Parquet or JSON lines')
    .description(
      'Write every record of a ref (_anchor plus fields and layers) as an Arrow IPC stream, a Parquet file (row groups of --batch-size records, the Arrow schema kept, the ref and manifest in its metadata) or JSON lines (binary as base64, anchors as decimal strings). Records are streamed batch by batch. A file is written under a temporary name and renamed when complete.',
    )
    .argument('[ref]', 'the same as --ref-name')
    .addOption(refName())
    .addOption(
      new Option('--format <format>', 'arrow (IPC stream), parquet or jsonl')
        .choices(['arrow', 'parquet', 'jsonl'])
        .makeOptionMandatory(),
    )
    .requiredOption('--out <file|->', "the output file, or '-' for stdout")
    .option('--fields <a,b>', 'only these fields and layers (default: all)', list)
    .option('--force', 'replace the output file if it exists')
    .addOption(
      new Option('--batch-size <records>', 'records per Arrow record batch (and per Parquet row group)')
        .default(4096)
        .argParser(positiveInt('--batch-size')),
    )
    .addOption(
      new Option('--compression <codec>', 'Parquet compression (default snappy)').choices([
        'snappy',
        'zstd',
        'gzip',
        'none',
      ]),
    )
    .addOption(
      new Option('--json', 'print a JSON summary (records, fields, manifest) when writing to a file'),
    )
    .addHelpText(
      'after',
      examples(
        'dreamdb export --ref-name prep-v1 --format arrow --out prep-v1.arrows',
        'dreamdb export --ref-name prod-1 --format parquet --fields embedding,label --out prod-1.parquet',
        'dreamdb export --ref-name corpus --format jsonl --fields label,split --out - | head',
      ),
    )
    .action(
      action(
        async (
          ctx,
          positional: string | undefined,
          options: {
            refName?: string
            format: 'arrow' | 'parquet' | 'jsonl'
            compression?: 'snappy' | 'zstd' | 'gzip' | 'none'
            out: string
            fields?: string[]
            force?: boolean
            batchSize: number
          },
        ) => {
          const ref = refArgument(positional, options.refName, 'export')
          return (await load('export')).exportRecords(ctx, ref, {
            format: options.format,
            out: options.out,
            batchSize: options.batchSize,
            ...(options.fields ? { fields: options.fields } : {}),
            ...(options.force ? { force: true } : {}),
            ...(options.compression ? { compression: options.compression } : {}),
          })
        },
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
      action(async (ctx, options: { refs?: string[]; prefix?: string; field: string; width?: number }) =>
        (await load('compare-refs')).compareRefs(ctx, {
          field: options.field,
          ...(options.refs ? { refs: options.refs } : {}),
          ...(options.prefix !== undefined ? { prefix: options.prefix } : {}),
          ...(options.width !== undefined ? { width: options.width } : {}),
        }),
      ),
    )

  program
    .command('search')
    .summary('the nearest records to a vector (IVF-RaBitQ or exact)')
    .description(
      "The k records nearest to a query vector under the field's metric: through the IVF-RaBitQ index for a compressed field (with rerank on kept vectors), an exact scan for float32. The query is a JSON vector or the vector of a record (--like-anchor, which is then the first hit). --filter keeps records whose scalar fields equal the values given.",
    )
    .argument('[ref]', 'the same as --ref-name')
    .addOption(refName())
    .option('--field <name>', 'the embedding field', 'embedding')
    .option('--query-json <vector>', "the query vector as JSON, e.g. '[0.1, -0.3, ...]'")
    .option('--like-anchor <anchor>', "use this record's vector as the query")
    .addOption(new Option('-k, --k <count>', 'how many records').default(10).argParser(positiveInt('-k')))
    .addOption(
      new Option('--nprobe <lists>', 'IVF lists to scan (default min(lists, 16))').argParser(
        positiveInt('--nprobe'),
      ),
    )
    .option('--rerank', 'rerank with the exact vectors (default: when the field keeps them)')
    .option('--no-rerank', 'rank by the RaBitQ estimates alone')
    .option('--filter <field=value,...>', 'only records whose scalar fields equal these values', list)
    .option('--fields <a,b>', 'the fields to print beside each hit (default: every scalar field)', list)
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb search --ref-name imagenet-100 --field embedding --like-anchor 42 -k 10',
        `dreamdb search --ref-name prep-v1 --query-json '[0.1, 0.7, 0, -0.2]' -k 5 --filter split=validation --json`,
      ),
    )
    .action(
      action(
        async (ctx, positional: string | undefined, options: SearchCommandOptions & { refName?: string }) => {
          const { refName: flag, ...rest } = options
          const ref = refArgument(positional, flag, 'search')
          return (await load('search')).search(ctx, ref, rest)
        },
      ),
    )

  program
    .command('migrate')
    .summary('opt an embedding field into IVF + RaBitQ (or back to float32)')
    .description(
      'Train (or retrain) an IVF index and a RaBitQ compressor on an embedding field of a branch and re-encode only that field, in one commit. Snapshots taken before keep their content. --algorithm float32 goes back to plain vectors (when they were kept).',
    )
    .argument('[ref]', 'the same as --ref-name (a branch)')
    .addOption(refName())
    .option('--field <name>', 'the embedding field', 'embedding')
    .addOption(new Option('--algorithm <name>', 'the encoding').choices(ALGORITHMS).makeOptionMandatory())
    .addOption(
      new Option('--bits <n>', 'RaBitQ bits per dimension, 1 to 8 (default 1)').argParser(
        positiveInt('--bits'),
      ),
    )
    .option('--no-rerank', 'keep only the codes (no full vectors beside them: smaller, no exact rerank)')
    .addOption(
      new Option('--lists <n>', 'IVF lists to train (default about sqrt(records))').argParser(
        positiveInt('--lists'),
      ),
    )
    .addOption(
      new Option('--seed <n>', 'seed of the training sample and rotation (default 0)').argParser(
        positiveInt('--seed'),
      ),
    )
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb migrate --ref-name imagenet-100 --field embedding --algorithm dreamdb.ivf-cosine',
        'dreamdb migrate --ref-name imagenet-100 --field embedding --algorithm dreamdb.ivf-cosine --bits 4 --no-rerank --json',
      ),
    )
    .action(
      action(
        async (
          ctx,
          positional: string | undefined,
          options: MigrateCommandOptions & { refName?: string },
        ) => {
          const { refName: flag, ...rest } = options
          const ref = refArgument(positional, flag, 'migrate')
          return (await load('migrate')).migrate(ctx, ref, rest)
        },
      ),
    )

  program
    .command('drop-layer')
    .summary("take a layer off a branch (a sweep run's predictions that lost)")
    .description(
      'Commit the branch without the layer, in one small commit. Nothing is deleted: snapshots, the history and other branches keep it, and its objects stay until nothing reaches them (gc). A layer another layer derives from is refused until that one is dropped.',
    )
    .argument('[ref]', 'the same as --ref-name (a branch)')
    .addOption(refName())
    .requiredOption('--layer <name>', 'the layer to drop')
    .option('-m, --message <text>', 'the commit message (default: drop layer <name> (<n> records))')
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb drop-layer sweep/lr-0.1 --layer prediction',
        "dreamdb drop-layer --ref-name sweep/lr-0.1 --layer prediction -m 'lost the sweep' --json",
      ),
    )
    .action(
      action(
        async (
          ctx,
          positional: string | undefined,
          options: DropLayerCommandOptions & { refName?: string },
        ) => {
          const { refName: flag, ...rest } = options
          const ref = refArgument(positional, flag, 'drop-layer')
          return (await load('drop-layer')).dropLayer(ctx, ref, rest)
        },
      ),
    )

  program
    .command('merge')
    .summary("bring another branch's new records and layers onto a branch (a sweep winner's predictions)")
    .description(
      "Commit the branch with what --from did since the two branches diverged: its appended records after this branch's own, and its layers written or dropped since. One commit with two parents; merging again takes only what is new. Refused with nothing written (exit 4) when --from did more than append and write layers since they diverged (a schema change, a compaction, a migration, a restore, a merge of its own), when both sides changed the same layer, or when a layer, schema or field of the branch changed meanwhile (appends are fine).",
    )
    .argument('[ref]', 'the same as --ref-name (a branch)')
    .addOption(refName())
    .requiredOption('--from <ref|manifest>', 'the branch (or state) to merge in')
    .option('-m, --message <text>', 'the commit message (default: merge <manifest>: <n> records, layers ...)')
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb merge corpus --from sweep/lr-0.01',
        "dreamdb merge corpus --from ingest-dec -m 'December batch' --json",
      ),
    )
    .action(
      action(
        async (ctx, positional: string | undefined, options: MergeCommandOptions & { refName?: string }) => {
          const { refName: flag, ...rest } = options
          const ref = refArgument(positional, flag, 'merge')
          return (await load('merge')).merge(ctx, ref, rest)
        },
      ),
    )

  program
    .command('restore')
    .summary('bring back a past state of a branch (take back a bad append), in one commit')
    .description(
      "Commit the branch with the state (schema, records, layers) of --from: a snapshot, another ref or a manifest CID, usually one of the branch's own past states from `dreamdb log`. Nothing is rewritten: the history keeps every commit, the ones restored over included, so a restore can be restored over in turn. A commit on the branch between reading it and committing is a conflict (exit 4), not restored over unseen. Already at that state: nothing is written.",
    )
    .argument('[ref]', 'the same as --ref-name (a branch)')
    .addOption(refName())
    .requiredOption('--from <ref|manifest>', 'the state to bring back')
    .option('-m, --message <text>', 'the commit message (default: restore the state of <manifest>)')
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb restore corpus --from prep-v1',
        "dreamdb restore --ref-name corpus --from bafyreig... -m 'take back the bad batch' --json",
      ),
    )
    .action(
      action(
        async (
          ctx,
          positional: string | undefined,
          options: RestoreCommandOptions & { refName?: string },
        ) => {
          const { refName: flag, ...rest } = options
          const ref = refArgument(positional, flag, 'restore')
          return (await load('restore')).restore(ctx, ref, rest)
        },
      ),
    )

  program
    .command('add-fields')
    .summary('add base fields to a branch (a caption column from now on)')
    .description(
      'Commit the branch with more base fields, in one small commit: records appended before read them as nulls (values for them are a layer, or an append of new records). A name a field or layer already has, and a bad definition, are refused before anything is written.',
    )
    .argument('[ref]', 'the same as --ref-name (a branch)')
    .addOption(refName())
    .requiredOption(
      '--schema <json|file>',
      'the fields to add, in init\'s format (a list, or {"fields": [...]})',
    )
    .option('-m, --message <text>', 'the commit message (default: schema: add <names>)')
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        `dreamdb add-fields corpus --schema '[{"name":"caption","family":"scalar","kind":"string"}]'`,
        'dreamdb add-fields --ref-name corpus --schema more-fields.json --json',
      ),
    )
    .action(
      action(
        async (
          ctx,
          positional: string | undefined,
          options: AddFieldsCommandOptions & { refName?: string },
        ) => {
          const { refName: flag, ...rest } = options
          const ref = refArgument(positional, flag, 'add-fields')
          return (await load('fields')).addFields(ctx, ref, rest)
        },
      ),
    )

  program
    .command('drop-field')
    .summary('take a base field off a branch (image bytes once embeddings are computed)')
    .description(
      "Commit the branch without the base field: its schema and every bucket no longer name the field's objects (only the timeline's nodes are written, no data). Nothing is deleted: snapshots, the history and other branches keep it, and its objects stay until nothing reaches them (gc). The name may be given to a new field later. A layer, the last base field and a field a layer derives from are refused.",
    )
    .argument('[ref]', 'the same as --ref-name (a branch)')
    .addOption(refName())
    .requiredOption('--field <name>', 'the base field to drop')
    .option('-m, --message <text>', 'the commit message (default: drop field <name> (<n> buckets))')
    .addOption(json())
    .addHelpText(
      'after',
      examples(
        'dreamdb drop-field imagenet-embeddings --field image',
        "dreamdb drop-field --ref-name imagenet-embeddings --field image -m 'embeddings only' --json",
      ),
    )
    .action(
      action(
        async (
          ctx,
          positional: string | undefined,
          options: DropFieldCommandOptions & { refName?: string },
        ) => {
          const { refName: flag, ...rest } = options
          const ref = refArgument(positional, flag, 'drop-field')
          return (await load('fields')).dropField(ctx, ref, rest)
        },
      ),
    )

  program
    .command('compact')
    .summary('merge runs of small buckets that many small appends left behind')
    .description(
      "Merge runs of consecutive small buckets of a branch into buckets of about the size an append of many records makes (or --target-records), one commit per run, from the end of the timeline backwards: iteration then reads a few large objects instead of many small ones. Every record keeps its anchor, position and values; snapshots and other branches keep their buckets, and the old objects stay until nothing reaches them (gc). An embedding field that keeps only RaBitQ codes (--no-rerank) is refused: merging would re-encode approximations. `dreamdb inspect` says when a branch's buckets are small.",
    )
    .argument('[ref]', 'the same as --ref-name (a branch)')
    .addOption(refName())
    .addOption(
      new Option(
        '--target-records <n>',
        "records a merged bucket holds at most (default: an append's bucket size for the schema)",
      ).argParser(positiveInt('--target-records')),
    )
    .addOption(json())
    .addHelpText(
      'after',
      examples('dreamdb compact corpus', 'dreamdb compact --ref-name corpus --target-records 65536 --json'),
    )
    .action(
      action(
        async (
          ctx,
          positional: string | undefined,
          options: CompactCommandOptions & { refName?: string },
        ) => {
          const { refName: flag, ...rest } = options
          const ref = refArgument(positional, flag, 'compact')
          return (await load('compact')).compact(ctx, ref, rest)
        },
      ),
    )

  registerUi(program, contextOf)
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
