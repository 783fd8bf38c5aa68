/** `snapshot` and `branch`: one small write each, from a ref or a manifest CID. */
import { type Context, sourceOf, withRepository } from '../context.js'

export async function snapshot(ctx: Context, label: string, options: { from: string }): Promise<void> {
  await withRepository(ctx, async (repo) => {
    const info = await repo.snapshot(label, sourceOf(options.from), { signal: ctx.signal })
    const result = {
      label: info.label,
      kind: 'snapshot' as const,
      from: options.from,
      manifest: info.manifest,
      timeline: info.timeline,
    }
    if (ctx.json) return await ctx.outJson('snapshot', result)
    await ctx.out(
      `snapshot '${ctx.paint('bold', info.label)}' pins ${options.from} at manifest ${ctx.paint('dim', info.manifest)}`,
    )
  })
}

export async function branch(ctx: Context, name: string, options: { from: string }): Promise<void> {
  await withRepository(ctx, async (repo) => {
    const info = await repo.branch(name, sourceOf(options.from), { signal: ctx.signal })
    const result = {
      name: info.name,
      kind: info.kind,
      from: options.from,
      manifest: info.manifest.toString(),
      timeline: info.timeline?.toString() ?? null,
    }
    if (ctx.json) return await ctx.outJson('branch', result)
    await ctx.out(
      `branch '${ctx.paint('bold', name)}' created from ${options.from} at manifest ${ctx.paint('dim', result.manifest)}`,
    )
  })
}
