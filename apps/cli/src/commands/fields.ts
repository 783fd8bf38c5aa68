/** `add-fields` and `drop-field`: a branch's base fields, changed without writing data. */
import { Dataset } from '@dreamdb/dataset'
import { type Context, withRepository } from '../context.js'
import { formatBytes } from '../render/text.js'
import { readSchema } from './init.js'

export interface AddFieldsCommandOptions {
  /** The fields, as inline JSON or a file, in `init --schema`'s format. */
  schema: string
  message?: string
}

export interface AddFieldsResult {
  ref: string
  added: string[]
  from: string
  manifest: string
}

/** `Dataset.addFields` on a branch: one schema commit; older records read the fields as nulls. */
export async function addFields(ctx: Context, ref: string, options: AddFieldsCommandOptions): Promise<void> {
  const { fields } = await readSchema(options.schema, ctx.io.cwd)
  await withRepository(ctx, async (_repo, store) => {
    const ds = await Dataset.openRef(ref, { backend: store, signal: ctx.signal })
    const from = ds.currentManifest()
    const manifest = await ds.addFields(fields, {
      signal: ctx.signal,
      ...(options.message !== undefined ? { message: options.message } : {}),
    })
    const added = fields.map((f) => f.name)
    const result: AddFieldsResult = { ref, added, from, manifest }
    if (ctx.json) return await ctx.outJson('add-fields', result)
    await ctx.out(
      `added ${added.map((n) => `'${n}'`).join(', ')} to ${ref} (records before read them as nulls)`,
    )
    await ctx.out(`manifest ${ctx.paint('dim', manifest)}  (was ${from})`)
  })
}

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
