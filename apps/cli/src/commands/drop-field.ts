import { Dataset } from '@dreamdb/dataset'
import { type Context, withRepository } from '../context.js'
import { formatBytes } from '../render/text.js'

export interface DropFieldCommandOptions {
  field: string
  message?: string
}

export interface DropFieldResult {
  ref: string
  field: string
  /** Buckets whose objects of the field the branch no longer names. */
  buckets: number
  /** Stored bytes of the field the branch no longer names (snapshots and the history keep them). */
  bytes: number
  from: string
  manifest: string
}

/** `Dataset.dropField` on a branch: one commit without the field; snapshots keep it. */
export async function dropField(ctx: Context, ref: string, options: DropFieldCommandOptions): Promise<void> {
  await withRepository(ctx, async (_repo, store) => {
    const ds = await Dataset.openRef(ref, { backend: store, signal: ctx.signal })
    const from = ds.currentManifest()
    const bytes = ds.manifest.stats.bytes[options.field] ?? 0
    const manifest = await ds.dropField(options.field, {
      signal: ctx.signal,
      ...(options.message !== undefined ? { message: options.message } : {}),
    })
    const buckets = ds.manifest.stats.buckets
    const result: DropFieldResult = { ref, field: options.field, buckets, bytes, from, manifest }
    if (ctx.json) return await ctx.outJson('drop-field', result)
    await ctx.out(
      `dropped field '${options.field}' (${formatBytes(bytes)} in ${buckets} bucket${buckets === 1 ? '' : 's'}) from ${ref}`,
    )
    await ctx.out(`manifest ${ctx.paint('dim', manifest)}  (was ${from}, which keeps it)`)
  })
}
