import { type Diff, diff as manifestDiff } from '@dreamdb/manifest'
import { type Context, sourceOf, withRepository } from '../context.js'
import { ExitError } from '../errors.js'

/** Whether two states hold the same records, fields and layers. */
export function isEmptyDiff(d: Diff): boolean {
  return (
    d.from === d.to ||
    (d.records.added + d.records.removed + d.buckets.added + d.buckets.removed === 0 &&
      [d.fields, d.layers].every((x) => x.added.length + x.removed.length + x.changed.length === 0))
  )
}

export async function diff(
  ctx: Context,
  a: string,
  b: string,
  options: { exitCode?: boolean } = {},
): Promise<void> {
  const same = await withRepository(ctx, async (repo) => {
    const d = await manifestDiff(repo, sourceOf(a), sourceOf(b), { signal: ctx.signal })
    const same = isEmptyDiff(d)
    if (ctx.json) {
      await ctx.outJson('diff', { a, b, ...d, same })
      return same
    }
    const width = Math.max(a.length, b.length)
    await ctx.out(`from ${a.padEnd(width)}  ${ctx.paint('dim', d.from)}`)
    await ctx.out(`to   ${b.padEnd(width)}  ${ctx.paint('dim', d.to)}`)
    if (same) {
      await ctx.out('no differences')
      return same
    }
    await ctx.out(
      `records  ${ctx.paint('green', `+${d.records.added}`)} ${ctx.paint('red', `-${d.records.removed}`)}   buckets +${d.buckets.added} -${d.buckets.removed}`,
    )
    for (const [what, part] of [
      ['fields', d.fields],
      ['layers', d.layers],
    ] as const) {
      const items = [
        ...part.added.map((n) => ctx.paint('green', `+${n}`)),
        ...part.removed.map((n) => ctx.paint('red', `-${n}`)),
        ...part.changed.map((n) => ctx.paint('yellow', `~${n}`)),
      ]
      if (items.length > 0) await ctx.out(`${what.padEnd(7)}  ${items.join(' ')}`)
    }
    return same
  })
  // git diff --exit-code: 1 means "there are differences", not an error.
  if (options.exitCode && !same) throw new ExitError(1, true)
}
