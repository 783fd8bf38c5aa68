import { Dataset } from '@dreamdb/dataset'
import { type Context, withRepository } from '../context.js'
import type { ALGORITHMS } from '../program.js'
import { formatCount } from '../render/text.js'

export interface MigrateCommandOptions {
  field: string
  /** An IVF + RaBitQ algorithm, or `float32` for plain vectors. */
  algorithm: (typeof ALGORITHMS)[number]
  bits?: number
  rerank?: boolean
  lists?: number
  seed?: number
}

export interface MigrateResult {
  ref: string
  field: string
  algorithm: string | null
  bits: number | null
  rerank: boolean
  from: string
  manifest: string
  spatialIndex: string | null
  compressor: string | null
  records: number
  seconds: number
}

export async function migrate(ctx: Context, ref: string, options: MigrateCommandOptions): Promise<void> {
  await withRepository(ctx, async (_repo, store) => {
    const started = Date.now()
    const ds = await Dataset.openRef(ref, { backend: store, signal: ctx.signal })
    const from = ds.currentManifest()
    const algorithm = options.algorithm === 'float32' ? null : options.algorithm
    const manifest = await ds.migrate({
      field: options.field,
      algorithm,
      signal: ctx.signal,
      ...(options.bits !== undefined ? { bits: options.bits } : {}),
      ...(options.rerank !== undefined ? { rerank: options.rerank } : {}),
      ...(options.lists !== undefined ? { lists: options.lists } : {}),
      ...(options.seed !== undefined ? { seed: options.seed } : {}),
    })
    const field = ds.manifest.schema.fields.find((f) => f.name === options.field)
    const embedding = field?.family === 'embedding' ? field : undefined
    const result: MigrateResult = {
      ref,
      field: options.field,
      algorithm,
      bits: algorithm === null ? null : (options.bits ?? 1),
      rerank: embedding?.rerank ?? false,
      from,
      manifest,
      spatialIndex: embedding?.spatialIndex?.toString() ?? null,
      compressor: embedding?.compressor?.toString() ?? null,
      records: ds.manifest.stats.records,
      seconds: (Date.now() - started) / 1000,
    }
    if (ctx.json) return await ctx.outJson('migrate', result)
    const what =
      algorithm === null
        ? 'plain float32 vectors'
        : `${algorithm} (${result.bits} bit${result.bits === 1 ? '' : 's'}${result.rerank ? ', full vectors kept for rerank' : ', codes only'})`
    await ctx.out(
      `migrated '${options.field}' of ${ref} (${formatCount(result.records)} records) to ${what} in ${result.seconds.toFixed(1)} s`,
    )
    await ctx.out(`manifest ${ctx.paint('dim', manifest)}  (was ${from})`)
    if (result.spatialIndex) await ctx.out(`spatial index ${result.spatialIndex}`)
    if (result.compressor) await ctx.out(`compressor    ${result.compressor}`)
  })
}
