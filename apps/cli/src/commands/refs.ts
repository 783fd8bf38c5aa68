import { type Context, withRepository } from '../context.js'
import { shortCid, table } from '../render/text.js'

export interface RefRow {
  name: string
  kind: 'branch' | 'snapshot'
  manifest: string
  timeline: string | null
  records: number
  damaged: false
}

/** A ref whose body or manifest cannot be read: listed, not fatal. */
export interface DamagedRefRow {
  name: string
  damaged: true
  /** The error's stable code (`ERR_CAS_REF_CORRUPT`, `ERR_MANIFEST_CORRUPT`, `ERR_CAS_NOT_FOUND`, ...). */
  code: string
  message: string
}

/**
 * Every ref under the prefix with its kind, record count and manifest. A damaged ref (its
 * body or its manifest unreadable) is listed as `damaged` with its error code instead of
 * failing the listing; the command still exits 0 and the others are shown as usual.
 */
export async function refs(ctx: Context, prefix: string | undefined): Promise<void> {
  await withRepository(ctx, async (repo, store) => {
    const rows: (RefRow | DamagedRefRow)[] = []
    for await (const ref of repo.scanRefs(prefix ?? '', { signal: ctx.signal })) {
      rows.push(
        ref.damaged
          ? { name: ref.name, damaged: true, code: ref.code, message: ref.reason }
          : {
              name: ref.name,
              kind: ref.kind,
              manifest: ref.manifest.toString(),
              timeline: ref.timeline?.toString() ?? null,
              records: ref.records,
              damaged: false,
            },
      )
    }
    if (ctx.json) return await ctx.outJson('refs', { backend: store.url, prefix: prefix ?? '', refs: rows })
    if (rows.length === 0) {
      return await ctx.out(
        prefix ? `no refs starting with '${prefix}' in ${store.url}` : `no refs in ${store.url}`,
      )
    }
    const lines = table(
      [
        ['NAME', 'KIND', 'RECORDS', 'MANIFEST'],
        ...rows.map((r) =>
          r.damaged
            ? [r.name, 'damaged', '-', r.code]
            : [r.name, r.kind, String(r.records), shortCid(r.manifest)],
        ),
      ],
      { right: [2], header: (t) => ctx.paint('bold', t) },
    )
    for (const line of lines) await ctx.out(line)
    const damaged = rows.filter((r) => r.damaged)
    for (const r of damaged) await ctx.out(ctx.paint('dim', `${r.name}: ${r.message}`))
  })
}
