/**
 * Deleting refs, `fsck` and `gc` (design/0008). The work is in `@dreamdb/manifest`
 * (`deleteRef`, `fsck`, `collectGarbage`); this file parses, calls and renders.
 */
import { collectGarbage, DEFAULT_GRACE_MS, deleteRef, type FsckReport, fsck } from '@dreamdb/manifest'
import { type Context, withRepository } from '../context.js'
import { ExitError, UsageError } from '../errors.js'
import { formatBytes } from '../render/text.js'

/** `fsck` found damage: a missing or corrupt object reached from a ref, or an unreadable ref. */
export const EXIT_DAMAGED = 5

/** `7d`, `36h`, `90m`, `3600s` or plain milliseconds -> ms. */
export function parseDuration(value: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value)
  if (m === null) throw new UsageError(`--grace takes a duration such as 7d, 36h or 90m, not '${value}'`)
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 'ms']!
  return Math.round(Number(m[1]) * unit)
}

export async function deleteRefCommand(
  ctx: Context,
  name: string,
  options: { kind: 'branch' | 'snapshot'; expect?: string; force?: boolean },
): Promise<void> {
  await withRepository(ctx, async (repo) => {
    try {
      const deleted = await deleteRef(repo, name, {
        kind: options.kind,
        ...(options.expect !== undefined ? { expect: options.expect } : {}),
        ...(options.force ? { force: true } : {}),
        signal: ctx.signal,
      })
      const result = {
        deleted: deleted.name,
        kind: deleted.kind,
        manifest: deleted.manifest.toString(),
        timeline: deleted.timeline?.toString() ?? null,
      }
      if (ctx.json) return await ctx.outJson('delete', result)
      await ctx.out(
        `deleted ${deleted.kind} '${ctx.paint('bold', name)}' (was at manifest ${ctx.paint('dim', result.manifest)}); its objects stay until dreamdb gc finds them unreachable`,
      )
    } catch (error) {
      const code = (error as { code?: string }).code
      if (code === 'ERR_MANIFEST_SNAPSHOT_IMMUTABLE' && options.kind === 'snapshot' && !options.force) {
        throw new UsageError(
          `'${name}' is a snapshot: snapshots are pinned states that readers rely on`,
          `dreamdb snapshot ${name} --delete --force deletes it`,
        )
      }
      if (code === 'ERR_MANIFEST_SNAPSHOT_IMMUTABLE' && options.kind === 'branch') {
        throw new UsageError(
          `'${name}' is a snapshot, not a branch`,
          `dreamdb snapshot ${name} --delete --force deletes a snapshot`,
        )
      }
      throw error
    }
  })
}

function fsckText(r: FsckReport, backend: string): string[] {
  const lines = [
    `fsck of ${backend} (${r.verify === 'all' ? 'every object read and verified' : 'metadata read, data objects by presence'})`,
    `refs         ${r.refs.user} user, ${r.refs.hidden} hidden, ${r.refs.unreadable.length} unreadable`,
    `reachable    ${r.reachable.objects} objects, ${formatBytes(r.reachable.bytes)} (${r.reachable.read} read)`,
    `missing      ${r.missing.length}`,
    `corrupt      ${r.corrupt.length}`,
    `unreachable  ${r.unreachable.objects} objects, ${formatBytes(r.unreachable.bytes)} (dreamdb gc collects them once older than the grace period)`,
    `leftovers    ${r.leftovers.objects} temporary files, ${formatBytes(r.leftovers.bytes)}${
      Object.keys(r.leftovers.byKind).length > 0
        ? ` (${Object.entries(r.leftovers.byKind)
            .map(([k, v]) => `${k} ${v?.objects}`)
            .join(', ')})`
        : ''
    }`,
  ]
  for (const ref of r.refs.unreadable) lines.push(`unreadable ref ${ref.name}: ${ref.code}: ${ref.reason}`)
  for (const m of r.missing) lines.push(`missing ${m.kind} ${m.cid}  via ${m.via}`)
  for (const c of r.corrupt) lines.push(`corrupt ${c.kind} ${c.cid}: ${c.code}  via ${c.via}`)
  lines.push(r.ok ? 'ok: the store is whole' : 'DAMAGED: restore the objects named above from a copy')
  return lines
}

export async function fsckCommand(ctx: Context, options: { metadataOnly?: boolean }): Promise<void> {
  const report = await withRepository(ctx, async (_repo, store) => {
    const r = await fsck(store, { verify: options.metadataOnly ? 'metadata' : 'all', signal: ctx.signal })
    if (ctx.json) await ctx.outJson('fsck', { backend: store.url, ...r })
    else for (const line of fsckText(r, store.url)) await ctx.out(line)
    return r
  })
  if (!report.ok) throw new ExitError(EXIT_DAMAGED, true) // after the report drains
}

export async function gcCommand(ctx: Context, options: { apply?: boolean; grace?: string }): Promise<void> {
  const graceMs = options.grace === undefined ? DEFAULT_GRACE_MS : parseDuration(options.grace)
  await withRepository(ctx, async (_repo, store) => {
    const r = await collectGarbage(store, { apply: options.apply === true, graceMs, signal: ctx.signal })
    if (ctx.json) {
      const { sweep, ...rest } = r
      return await ctx.outJson('gc', {
        backend: store.url,
        ...rest,
        sweep: { objects: sweep.objects, bytes: sweep.bytes, cids: sweep.cids.slice(0, 1000) },
      })
    }
    const verb = r.dryRun ? 'would delete' : 'deleted'
    const days = (ms: number) =>
      ms % 86_400_000 === 0 ? `${ms / 86_400_000} d` : `${(ms / 3_600_000).toFixed(1)} h`
    await ctx.out(
      `gc of ${store.url}${r.dryRun ? ' (dry run: pass --apply to delete)' : ''}, grace ${days(r.graceMs)}`,
    )
    await ctx.out(`refs         ${r.refs.user} user, ${r.refs.hidden} hidden`)
    await ctx.out(`stored       ${r.stored.objects} objects, ${formatBytes(r.stored.bytes)}`)
    await ctx.out(`reachable    ${r.reachable.objects} objects, ${formatBytes(r.reachable.bytes)}`)
    await ctx.out(`young        ${r.young.objects} unreachable objects kept (younger than the grace period)`)
    const sweptObjects = r.dryRun ? r.sweep.objects : r.deleted.objects
    const sweptBytes = r.dryRun ? r.sweep.bytes : r.deleted.bytes
    await ctx.out(`${verb.padEnd(12)} ${sweptObjects} objects, ${formatBytes(sweptBytes)}`)
    if (r.keptFresh > 0) await ctx.out(`kept         ${r.keptFresh} objects a writer used again meanwhile`)
    await ctx.out(
      `leftovers    ${r.leftovers.found} temporary files, ${r.leftovers.old} older than the grace period (${formatBytes(r.leftovers.bytes)})${r.dryRun ? '' : `, ${r.leftovers.deleted} deleted`}`,
    )
  })
}
