import { type Change, type LogEntry, log as manifestLog } from '@dreamdb/manifest'
import { type Context, withRepository } from '../context.js'
import { formatTime, shortCid } from '../render/text.js'

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`

/** One line about what a commit did. */
export function describeChange(change: Change): string {
  switch (change.kind) {
    case 'create':
      return 'create'
    case 'append':
      return `append +${plural(change.records, 'record')} in ${plural(change.buckets, 'bucket')}`
    case 'layer':
      return `layer '${change.name}': ${plural(change.records, 'value')} in ${plural(change.segments, 'segment')}`
    case 'schema': {
      const parts = [
        change.added.length > 0 ? `added ${change.added.join(', ')}` : '',
        change.replaced.length > 0 ? `replaced ${change.replaced.join(', ')}` : '',
      ].filter((p) => p !== '')
      return `schema: ${parts.join('; ') || 'no change'}`
    }
    case 'compact':
      return `compact ${plural(change.replaced, 'bucket')} at ${change.start} into ${change.buckets}`
    case 'drop':
      return `drop layer '${change.layer}' (${plural(change.records, 'value')})`
    case 'drop-field':
      return `drop field '${change.field}' from ${plural(change.buckets, 'bucket')}`
    case 'merge':
      return `merge ${shortCid(change.from.toString())}: +${plural(change.records, 'record')}${change.layers.length > 0 ? `, layers ${change.layers.join(', ')}` : ''}`
    case 'restore':
      return `restore the state of ${shortCid(change.from.toString())}`
    default: {
      // A kind this CLI does not know yet (from a newer @dreamdb/manifest): its fields as they are.
      const { kind, ...rest } = change as { kind: string }
      const details = Object.entries(rest).map(
        ([k, v]) => `${k} ${Array.isArray(v) ? v.join(', ') : String(v)}`,
      )
      return details.length > 0 ? `${kind}: ${details.join(', ')}` : kind
    }
  }
}

/** The lines `log` and `inspect` print for history entries. */
export function historyLines(ctx: Context, entries: LogEntry[], indent = ''): string[] {
  const lines: string[] = []
  for (const entry of entries) {
    const refs = entry.refs.map((r) => `${r.name} (${r.kind})`).join(', ')
    lines.push(
      `${indent}${ctx.paint('yellow', shortCid(entry.manifest))}${refs ? `  ${ctx.paint('cyan', `<- ${refs}`)}` : ''}`,
    )
    lines.push(
      `${indent}  ${formatTime(entry.timestamp)}  ${describeChange(entry.change)}  (${plural(entry.records, 'record')} in total)`,
    )
    if (entry.message) lines.push(`${indent}  ${entry.message}`)
  }
  return lines
}

export async function log(ctx: Context, ref: string, options: { limit?: number }): Promise<void> {
  await withRepository(ctx, async (repo) => {
    const entries = await manifestLog(repo, ref, {
      signal: ctx.signal,
      ...(options.limit !== undefined ? { limit: options.limit } : {}),
    })
    if (ctx.json) return await ctx.outJson('log', { ref, entries })
    for (const line of historyLines(ctx, entries)) await ctx.out(line)
  })
}
