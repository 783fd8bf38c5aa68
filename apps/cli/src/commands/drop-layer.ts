import { Dataset } from '@dreamdb/dataset'
import { type Context, withRepository } from '../context.js'
import { formatCount } from '../render/text.js'

export interface DropLayerCommandOptions {
  layer: string
  message?: string
}

export interface DropLayerResult {
  ref: string
  layer: string
  /** The layer's values the branch no longer shows. */
  records: number
  from: string
  manifest: string
}

/** `Dataset.dropLayer` on a branch: one commit without the layer; snapshots keep it. */
export async function dropLayer(ctx: Context, ref: string, options: DropLayerCommandOptions): Promise<void> {
  await withRepository(ctx, async (_repo, store) => {
    const ds = await Dataset.openRef(ref, { backend: store, signal: ctx.signal })
    const from = ds.currentManifest()
    const records = ds.manifest.layers.find((l) => l.name === options.layer)?.records ?? 0
    const manifest = await ds.dropLayer(options.layer, {
      signal: ctx.signal,
      ...(options.message !== undefined ? { message: options.message } : {}),
    })
    const result: DropLayerResult = { ref, layer: options.layer, records, from, manifest }
    if (ctx.json) return await ctx.outJson('drop-layer', result)
    await ctx.out(`dropped layer '${options.layer}' (${formatCount(records)} values) from ${ref}`)
    await ctx.out(`manifest ${ctx.paint('dim', manifest)}  (was ${from}, which keeps it)`)
  })
}
