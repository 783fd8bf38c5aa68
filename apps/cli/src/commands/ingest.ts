import {
  type ColumnMode,
  describeHolder,
  type EmbeddingSource,
  type IngestEvent,
  type IngestResult,
  type ModelOptions,
  ingest as run,
} from '@dreamdb/ingest'
import { type Context, withRepository } from '../context.js'
import { UsageError } from '../errors.js'
import { type OutStream, write } from '../io.js'
import { type ProgressState, progressLine } from '../render/progress.js'
import { formatBytes, formatCount, table } from '../render/text.js'

export interface IngestCommandOptions {
  root: string
  datasetName: string
  splits: string[]
  embeddingColumn?: string
  model?: string
  modelOutput?: string
  modelInputSize?: [number, number]
  modelResize?: 'stretch' | 'center-crop'
  modelMean?: [number, number, number]
  modelStd?: [number, number, number]
  modelBatch?: number
  ivf?: boolean
  rabitq?: boolean
  bits?: number
  batchRecords: number
  concurrency: number
  progress?: boolean
  /** Seconds to wait for an older DreamDB's ingest of the dataset (`--wait [seconds]`; true: 10 minutes). */
  wait?: number | true
  /** Seconds a shard claim outlives its last renewal. */
  leaseTtl?: number
  /** `all` (every source column) or `core` (image, embedding, label, split). */
  columns?: ColumnMode
}

/** Flags that only make sense together, checked before anything is read. */
function embeddingSource(o: IngestCommandOptions): EmbeddingSource {
  const modelFlags = (
    [
      ['--model-output', o.modelOutput],
      ['--model-input-size', o.modelInputSize],
      ['--model-resize', o.modelResize],
      ['--model-mean', o.modelMean],
      ['--model-std', o.modelStd],
      ['--model-batch', o.modelBatch],
    ] as const
  ).filter(([, v]) => v !== undefined)
  if (o.embeddingColumn !== undefined && o.model !== undefined) {
    throw new UsageError(
      '--embedding-column and --model contradict each other',
      'read the vectors from a column of the shards, or compute them with a model, not both',
    )
  }
  if (o.model === undefined && modelFlags.length > 0) {
    throw new UsageError(
      `${modelFlags[0]![0]} needs --model`,
      'dreamdb ingest --help shows the model options',
    )
  }
  if (o.model !== undefined) {
    const model: ModelOptions = { path: o.model }
    if (o.modelOutput !== undefined) model.output = o.modelOutput
    if (o.modelInputSize !== undefined) model.inputSize = o.modelInputSize
    if (o.modelResize !== undefined) model.resize = o.modelResize
    if (o.modelMean !== undefined) model.mean = o.modelMean
    if (o.modelStd !== undefined) model.std = o.modelStd
    if (o.modelBatch !== undefined) model.batch = o.modelBatch
    return { kind: 'model', ...model }
  }
  return { kind: 'column', column: o.embeddingColumn ?? 'embedding' }
}

function indexOption(o: IngestCommandOptions): { algorithm: string; bits: number } | undefined {
  if (o.ivf !== o.rabitq) {
    throw new UsageError(
      `${o.ivf ? '--ivf' : '--rabitq'} without ${o.ivf ? '--rabitq' : '--ivf'}`,
      'the index is IVF partitioning with RaBitQ codes: pass --ivf --rabitq',
    )
  }
  if (!o.ivf) {
    if (o.bits !== undefined) throw new UsageError('--bits needs --ivf --rabitq')
    return undefined
  }
  const bits = o.bits ?? 1
  if (bits > 8) throw new UsageError(`--bits must be from 1 to 8, not ${bits}`)
  return { algorithm: 'dreamdb.ivf-cosine', bits }
}

/** Where progress goes: an Ink bar on a terminal, plain lines otherwise, nothing with --no-progress. */
interface Reporter {
  update(state: ProgressState, force?: boolean): void
  stop(): Promise<void>
}

/** `--wait` without a number: how long to wait for another ingest of the dataset. */
export const DEFAULT_WAIT_S = 600

/** Plain lines at most this often, except the plan, the first commit, the last, and phases. */
const PLAIN_INTERVAL_MS = 1000

function plainReporter(stream: OutStream): Reporter {
  let last = 0
  let pending: Promise<void> = Promise.resolve()
  return {
    update(state, force = false) {
      const now = Date.now()
      if (!force && now - last < PLAIN_INTERVAL_MS) return
      last = now
      const line = `${progressLine(state)}\n`
      pending = pending.then(() => write(stream, line))
    },
    stop: () => pending,
  }
}

async function inkReporter(ctx: Context, color: boolean): Promise<Reporter> {
  if (!color) ctx.io.env.FORCE_COLOR = '0'
  const [{ render }, { progressElement }] = await Promise.all([
    import('ink'),
    import('../render/progress-view.js'),
  ])
  const stream = ctx.io.stderr as unknown as NodeJS.WriteStream
  const width = Math.min(stream.columns || 80, 100)
  let latest: ProgressState | undefined
  const element = (state: ProgressState) => progressElement({ state, width, color })
  let instance: ReturnType<typeof render> | undefined
  // Rate and ETA move with time, not only with commits.
  const timer = setInterval(() => {
    if (latest && instance) instance.rerender(element({ ...latest, elapsedMs: latest.elapsedMs }))
  }, 500)
  timer.unref()
  return {
    update(state) {
      latest = state
      if (instance === undefined) {
        instance = render(element(state), { stdout: stream, patchConsole: false, exitOnCtrlC: false })
      } else {
        instance.rerender(element(state))
      }
    },
    async stop() {
      clearInterval(timer)
      if (instance) {
        instance.unmount()
        await instance.waitUntilExit()
      }
    },
  }
}

export async function ingest(ctx: Context, options: IngestCommandOptions): Promise<void> {
  const embedding = embeddingSource(options)
  const index = indexOption(options)
  const stderr = ctx.io.stderr
  const reporter: Reporter | undefined =
    options.progress === false
      ? undefined
      : stderr.isTTY
        ? await inkReporter(ctx, ctx.errColor)
        : plainReporter(stderr)
  const started = Date.now()
  const state: ProgressState = {
    title: `ingest ${options.datasetName}`,
    done: 0,
    total: 0,
    bytes: 0,
    elapsedMs: 0,
    last: '',
  }
  const onProgress = (event: IngestEvent) => {
    state.elapsedMs = Date.now() - started
    if (event.kind === 'planned') {
      state.total = event.total
      state.last =
        event.skipped > 0
          ? `${formatCount(event.skipped)} records of these shards already in '${options.datasetName}'`
          : `${event.chunks} chunks from ${event.shards} shards`
      if (event.skippedColumns.length > 0) {
        state.last += `; not ingested: ${event.skippedColumns.map((c) => `${c.name} (${c.type})`).join(', ')}`
      }
      reporter?.update(state, true)
    } else if (event.kind === 'chunk') {
      const first = state.done === 0
      delete state.phase
      state.done += event.records
      state.bytes += event.bytes
      state.last = `committed ${event.split} ${event.shard} rows ${event.start}-${event.end}`
      reporter?.update(state, first || state.done >= state.total)
    } else if (event.kind === 'lease-wait') {
      state.phase = `waiting for an older DreamDB's ingest into '${options.datasetName}' (${describeHolder(event.holder)})`
      reporter?.update(state, true)
    } else if (event.kind === 'lease-taken-over') {
      state.last = `took over the shard of ${describeHolder(event.holder)} (${event.why === 'dead' ? 'its process is gone' : 'its claim expired'})`
      reporter?.update(state, true)
    } else if (event.kind === 'claims-wait') {
      const hosts = [...new Set(event.shards.map((s) => describeHolder(s.holder)))]
      state.phase = `waiting for ${event.shards.length} shard${event.shards.length === 1 ? '' : 's'} other ingests are writing (${hosts.slice(0, 2).join('; ')}${hosts.length > 2 ? '; …' : ''})`
      reporter?.update(state, true)
    } else if (event.kind === 'others') {
      // Rows other ingests committed count towards the total this one shows.
      state.done += event.records
      reporter?.update(state, state.done >= state.total)
    } else if (event.kind === 'waiting') {
      // Shown until the next commit.
      state.phase = event.message
      reporter?.update(state, true)
    } else {
      state.phase = `training and applying ${event.algorithm} (${event.bits} bit${event.bits === 1 ? '' : 's'}) on embedding`
      reporter?.update(state, true)
    }
  }
  let result: IngestResult
  try {
    result = await withRepository(
      ctx,
      (repo) =>
        run(repo, {
          root: options.root,
          dataset: options.datasetName,
          splits: options.splits,
          embedding,
          index,
          batchRecords: options.batchRecords,
          concurrency: options.concurrency,
          ...(options.columns !== undefined ? { columns: options.columns } : {}),
          lease: {
            waitMs:
              options.wait === undefined
                ? 0
                : options.wait === true
                  ? DEFAULT_WAIT_S * 1000
                  : options.wait * 1000,
            ...(options.leaseTtl !== undefined ? { ttlMs: options.leaseTtl * 1000 } : {}),
            command: `dreamdb ingest --root ${options.root} --splits ${options.splits.join(',')}`,
          },
          cwd: ctx.io.cwd,
          signal: ctx.signal,
          onProgress,
        }),
      { create: true },
    )
  } finally {
    await reporter?.stop()
  }
  if (ctx.json) return await ctx.outJson('ingest', result)
  await printSummary(ctx, result)
}

async function printSummary(ctx: Context, r: IngestResult): Promise<void> {
  const n = formatCount
  const rate =
    r.seconds > 0
      ? ` (${n(Math.round(r.records.ingested / r.seconds))} records/s, ${formatBytes(r.bytes / r.seconds)}/s)`
      : ''
  const head =
    r.records.ingested === 0
      ? `nothing to ingest: every record of these shards is already in '${r.dataset}' (${n(r.records.skipped)} records)`
      : `ingested ${n(r.records.ingested)} records (${formatBytes(r.bytes)} of images) into '${r.dataset}'${r.created ? ' (created)' : ''} in ${r.seconds.toFixed(1)} s${rate}`
  await ctx.out(ctx.paint('bold', head))
  const rows = Object.entries(r.splits).map(([split, s]) => [
    split,
    `${s.shards} shard${s.shards === 1 ? '' : 's'}`,
    `${n(s.records)} records`,
    `${n(s.ingested)} new`,
    s.skipped > 0 ? `${n(s.skipped)} already in` : '',
  ])
  for (const line of table(rows, { right: [2, 3] })) await ctx.out(`  ${line.trimEnd()}`)
  await ctx.out(
    `embedding  ${r.embedding.source === 'column' ? `column '${r.embedding.column}'` : `${r.embedding.model} (output ${r.embedding.output})`}, dim ${r.embedding.dim}`,
  )
  if (r.index) {
    await ctx.out(
      `index      ${r.index.algorithm}, ${r.index.bits} bit${r.index.bits === 1 ? '' : 's'}${r.index.trained ? ' (trained now)' : ' (already trained; dreamdb migrate retrains)'}`,
    )
  }
  await ctx.out(
    `columns    ${r.columns.fields.join(', ')}${r.columns.skipped.length > 0 ? `; not ingested: ${r.columns.skipped.map((c) => c.name).join(', ')}` : ''}`,
  )
  await ctx.out(`records    ${n(r.records.total)} in '${r.dataset}'`)
  await ctx.out(`manifest   ${ctx.paint('dim', r.manifest)}`)
}
