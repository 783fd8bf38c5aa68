import { Dataset } from '@dreamdb/dataset'
import { type Context, sourceOf, withRepository } from '../context.js'
import { formatCount } from '../render/text.js'

export interface RestoreCommandOptions {
  from: string
  message?: string
}

export interface RestoreResult {
  ref: string
  /** The state restored, as given (a ref or a manifest CID), and its manifest. */
  from: string
  fromManifest: string
  /** The branch's manifest before, and after (the same when it already had that state). */
  previous: string
  manifest: string
  restored: boolean
  records: number
}

/** `Dataset.restore` on a branch: one commit with the state of `--from`; the history keeps the rest. */
export async function restore(ctx: Context, ref: string, options: RestoreCommandOptions): Promise<void> {
  await withRepository(ctx, async (_repo, store) => {
    const ds = await Dataset.openRef(ref, { backend: store, signal: ctx.signal })
    const previous = ds.currentManifest()
    // Through the dataset's repository: the manifest it reads is the one the write reads again.
    const from = await ds.repository.resolve(sourceOf(options.from), { signal: ctx.signal })
    const manifest = await ds.restore(from.target.manifest, {
      signal: ctx.signal,
      ...(options.message !== undefined ? { message: options.message } : {}),
    })
    const result: RestoreResult = {
      ref,
      from: options.from,
      fromManifest: from.target.manifest.toString(),
      previous,
      manifest,
      restored: manifest !== previous,
      records: ds.manifest.stats.records,
    }
    if (ctx.json) return await ctx.outJson('restore', result)
    if (!result.restored) {
      await ctx.out(`${ref} already has the state of ${options.from}: nothing to restore`)
      return
    }
    await ctx.out(`restored ${ref} to the state of ${options.from} (${formatCount(result.records)} records)`)
    await ctx.out(`manifest ${ctx.paint('dim', manifest)}  (was ${previous}, kept in the history)`)
  })
}
