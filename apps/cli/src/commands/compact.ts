import { Dataset } from '@dreamdb/dataset'
import { type Context, withRepository } from '../context.js'
import { formatCount } from '../render/text.js'

export interface CompactCommandOptions {
  targetRecords?: number
}

export interface CompactResult {
  ref: string
  from: string
  /** The branch's manifest after the last merge; null when nothing was small enough to merge. */
  manifest: string | null
  /** Buckets of the timeline before and after. */
  buckets: { before: number; after: number }
  /** Commits made: one per run of consecutive small buckets merged into one. */
  commits: number
  /** Records in the merged buckets (every record keeps its anchor, position and values). */
  records: number
}

/** `Dataset.compact` on a branch: runs of small consecutive buckets merged, one commit per run. */
export async function compact(ctx: Context, ref: string, options: CompactCommandOptions): Promise<void> {
  await withRepository(ctx, async (_repo, store) => {
    const ds = await Dataset.openRef(ref, { backend: store, signal: ctx.signal })
    const from = ds.currentManifest()
    const before = ds.manifest.stats.buckets
    let commits = 0
    let records = 0
    const manifest = await ds.compact({
      signal: ctx.signal,
      ...(options.targetRecords !== undefined ? { targetRecords: options.targetRecords } : {}),
      onProgress: (event) => {
        if (event.kind === 'planned') records = event.records
        else commits = event.done
      },
    })
    const result: CompactResult = {
      ref,
      from,
      manifest: manifest ?? null,
      buckets: { before, after: ds.manifest.stats.buckets },
      commits,
      records,
    }
    if (ctx.json) return await ctx.outJson('compact', result)
    if (manifest === undefined) {
      await ctx.out(
        `nothing to compact on ${ref}: no two consecutive buckets fit in one (${before} bucket${before === 1 ? '' : 's'})`,
      )
      return
    }
    await ctx.out(
      `compacted ${ref}: ${formatCount(before)} buckets -> ${formatCount(result.buckets.after)} (${formatCount(records)} records merged in ${commits} commit${commits === 1 ? '' : 's'})`,
    )
    await ctx.out(`manifest ${ctx.paint('dim', manifest)}  (was ${from}, which keeps its buckets)`)
  })
}
