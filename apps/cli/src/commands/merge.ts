import { Dataset } from '@dreamdb/dataset'
import { type Context, sourceOf, withRepository } from '../context.js'
import { formatCount } from '../render/text.js'

export interface MergeCommandOptions {
  from: string
  message?: string
}

export interface MergeResult {
  ref: string
  from: string
  /** The head merged in. */
  fromManifest: string
  previous: string
  manifest: string
  /** False when everything `from` did was already here (no commit). */
  merged: boolean
  /** Records appended from `from`, and the layers taken from it (written or dropped there). */
  records: number
  layers: string[]
}

/** `Dataset.merge` on a branch: one commit with two parents. */
export async function merge(ctx: Context, ref: string, options: MergeCommandOptions): Promise<void> {
  await withRepository(ctx, async (_repo, store) => {
    const ds = await Dataset.openRef(ref, { backend: store, signal: ctx.signal })
    const previous = ds.currentManifest()
    // Through the dataset's repository: the manifest it reads is the one the write reads again.
    const from = await ds.repository.resolve(sourceOf(options.from), { signal: ctx.signal })
    const manifest = await ds.merge(from.target.manifest, {
      signal: ctx.signal,
      ...(options.message !== undefined ? { message: options.message } : {}),
    })
    const change = ds.manifest.change
    const merged = manifest !== previous && change.kind === 'merge'
    const result: MergeResult = {
      ref,
      from: options.from,
      fromManifest: from.target.manifest.toString(),
      previous,
      manifest,
      merged,
      records: merged && change.kind === 'merge' ? change.records : 0,
      layers: merged && change.kind === 'merge' ? change.layers : [],
    }
    if (ctx.json) return await ctx.outJson('merge', result)
    if (!merged) {
      await ctx.out(`${ref} already has everything ${options.from} did: nothing to merge`)
      return
    }
    const layers = result.layers.length > 0 ? `, layers ${result.layers.map((l) => `'${l}'`).join(', ')}` : ''
    await ctx.out(`merged ${options.from} into ${ref}: ${formatCount(result.records)} records${layers}`)
    await ctx.out(`manifest ${ctx.paint('dim', manifest)}  (parents ${previous} and ${result.fromManifest})`)
  })
}
