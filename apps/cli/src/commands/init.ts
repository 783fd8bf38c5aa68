import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import { Dataset } from '@dreamdb/dataset'
import type { FieldInput } from '@dreamdb/manifest'
import { CONFIG_FILE, writeProjectConfig } from '../config.js'
import { type Context, withRepository } from '../context.js'
import { FileNotFoundError, UsageError } from '../errors.js'

export interface InitOptions {
  schema: string
  /** S3: create the bucket when it does not exist. */
  createBucket?: boolean
  /** Record the backend as the project default in ./.dreamdb.json (default: when there is none yet). */
  saveConfig?: boolean
}

/**
 * Make the backend this dataset was created on the project's default: `./.dreamdb.json`,
 * unless a project config is already found from here (it is never overwritten).
 */
async function saveDefault(ctx: Context): Promise<string | null> {
  if (ctx.configPath !== undefined) return null
  try {
    return await writeProjectConfig(ctx.io.cwd, ctx.backend)
  } catch (error) {
    // Another init wrote it meanwhile: that one is the default.
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return null
    throw error
  }
}

/** `--schema` is inline JSON (starting with `{` or `[`) or the path of a JSON file. */
export async function readSchema(value: string, cwd: string): Promise<{ fields: FieldInput[] }> {
  const inline = /^\s*[{[]/.test(value)
  let text = value
  if (!inline) {
    const path = resolve(cwd, value)
    try {
      text = await readFile(path, 'utf8')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new FileNotFoundError(path, 'Schema file')
      throw error
    }
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw new UsageError(
      `--schema ${inline ? 'is not valid JSON' : `file ${value} is not valid JSON`}: ${(error as Error).message}`,
      'a schema is {"fields":[{"name":"label","family":"scalar","kind":"categorical"}, ...]} or just the list',
    )
  }
  const fields = Array.isArray(parsed) ? parsed : (parsed as { fields?: unknown } | null)?.fields
  if (!Array.isArray(fields)) {
    throw new UsageError(
      '--schema must be a list of fields or an object with "fields"',
      'dreamdb init --help shows the schema format',
    )
  }
  return { fields: fields as FieldInput[] }
}

export async function init(ctx: Context, name: string, options: InitOptions): Promise<void> {
  const schema = await readSchema(options.schema, ctx.io.cwd)
  await withRepository(
    ctx,
    async (_repo, store) => {
      const ds = await Dataset.create(name, { backend: store, schema, signal: ctx.signal })
      const config = options.saveConfig === false ? null : await saveDefault(ctx)
      const result = {
        name,
        kind: 'branch' as const,
        manifest: ds.currentManifest(),
        backend: store.url,
        schema: ds.manifest.schema,
        /** The project config written now (null: one existed already, or --no-save-config). */
        config,
      }
      if (ctx.json) return await ctx.outJson('init', result)
      await ctx.out(
        `created dataset '${ctx.paint('bold', name)}' with ${schema.fields.length} field${schema.fields.length === 1 ? '' : 's'} in ${store.url}`,
      )
      await ctx.out(`manifest ${ctx.paint('dim', result.manifest)}`)
      if (config !== null) {
        await ctx.out(
          `saved ${store.url} as this project's default backend in ${CONFIG_FILE} (--backend and DREAMDB_BACKEND override it)`,
        )
      }
    },
    { create: true, createBucket: options.createBucket === true },
  )
}
