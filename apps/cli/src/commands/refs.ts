import { type Context, withRepository } from '../context.js'
import { table } from '../render/text.js'

export interface RefRow {
  name: string
  kind: 'branch' | 'snapshot'
  manifest: string
  timeline: string | null
  records: number
}

export async function refs(ctx: Context, prefix: string | undefined): Promise<void> {
  await withRepository(ctx, async (repo, store) => {
    const rows: RefRow[] = []
    for await (const ref of repo.listRefs(prefix ?? '', { signal: ctx.signal })) {
      const manifest = await repo.loadManifest(ref.manifest, { signal: ctx.signal })
      rows.push({
        name: ref.name,
        kind: ref.kind,
        manifest: ref.manifest.toString(),
        timeline: ref.timeline?.toString() ?? null,
        records: manifest.stats.records,
      })
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
        ...rows.map((r) => [r.name, r.kind, String(r.records), r.manifest]),
      ],
      { right: [2], header: (t) => ctx.paint('bold', t) },
    )
    for (const line of lines) await ctx.out(line)
  })
}
