import { createWriteStream, existsSync } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { dirname, resolve } from 'node:path'
import { Readable, Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { exportRecords as exportStream, type ParquetCompression } from '@dreamdb/ingest'
import type { RecordBatch } from 'apache-arrow'
import { type Context, withRepository } from '../context.js'
import { FileNotFoundError, OutputExistsError, UsageError } from '../errors.js'
import { toJson, write } from '../io.js'
import { batchRows } from '../render/values.js'
import { fieldsOf, openSource, pickFields } from './head.js'

export type ExportFormat = 'arrow' | 'jsonl' | 'parquet'

export interface ExportOptions {
  format: ExportFormat
  out: string
  fields?: string[]
  force?: boolean
  batchSize?: number
  /** Parquet only. @default 'snappy' */
  compression?: ParquetCompression
}

export interface ExportSummary {
  ref: string
  manifest: string
  /** `arrow`, `jsonl` or `parquet` (`format` is the JSON document's own tag). */
  fileFormat: ExportFormat
  out: string
  fields: string[]
  records: number
}

export async function exportRecords(ctx: Context, ref: string, options: ExportOptions): Promise<void> {
  const toStdout = options.out === '-'
  if (options.compression !== undefined && options.format !== 'parquet') {
    throw new UsageError(`--compression is for --format parquet, not ${options.format}`)
  }
  if (toStdout && options.format !== 'jsonl' && ctx.io.stdout.isTTY) {
    throw new UsageError(
      `refusing to write ${options.format === 'arrow' ? 'an Arrow stream' : 'Parquet'} to a terminal`,
      'redirect it (> data.arrows) or use --out <file>',
    )
  }
  if (toStdout && ctx.json) {
    throw new UsageError(
      '--json with --out - would mix the summary into the data',
      'write the data to a file with --out <file>',
    )
  }
  const path = toStdout ? '-' : resolve(ctx.io.cwd, options.out)
  if (!toStdout) {
    if (existsSync(path) && !options.force) throw new OutputExistsError(path)
    if (!existsSync(dirname(path))) throw new FileNotFoundError(dirname(path), 'Output folder')
  }
  await withRepository(ctx, async (_repo, store) => {
    const ds = await openSource(ref, { backend: store, signal: ctx.signal })
    const known = fieldsOf(ds.manifest)
    const fields = pickFields(known, options.fields)
    let records = 0
    // JSON lines: the batches, rendered here.
    async function* batches(): AsyncGenerator<RecordBatch> {
      if (ds.manifest.stats.records === 0) return
      for await (const batch of ds.iterArrowBatches({
        fields,
        batchSize: options.batchSize ?? 4096,
        signal: ctx.signal,
      })) {
        records += batch.numRows
        yield batch
      }
    }
    // Write to a temporary file beside the target and rename at the end: a failed export
    // leaves no partial file under the name asked for.
    const temp = toStdout ? '' : `${path}.${process.pid}.${Date.now()}.partial`
    const sink: Writable = toStdout ? stdoutSink(ctx) : createWriteStream(temp)
    try {
      if (options.format === 'jsonl') {
        async function* lines() {
          for await (const batch of batches()) {
            const rows = batchRows(batch, known, 'base64')
            yield `${rows.map((row) => toJson(row, 0)).join('\n')}\n`
          }
        }
        await pipeline(Readable.from(lines()), sink)
      } else {
        // Arrow IPC or Parquet (row groups of --batch-size records, at most 128 MiB each).
        const exported = await exportStream(ds, {
          format: options.format,
          fields,
          batchSize: options.batchSize ?? 4096,
          ...(options.compression !== undefined ? { compression: options.compression } : {}),
          metadata: { 'dreamdb.ref': ref },
          signal: ctx.signal,
        })
        await pipeline(exported.stream, sink)
        records = exported.records()
      }
      if (!toStdout) await rename(temp, path)
    } catch (error) {
      if (!toStdout) await rm(temp, { force: true })
      throw error
    }
    const summary: ExportSummary = {
      ref,
      manifest: ds.currentManifest(),
      fileFormat: options.format,
      out: path,
      fields,
      records,
    }
    if (toStdout) return
    if (ctx.json) return await ctx.outJson('export', summary)
    // The summary goes to stderr-free stdout only when the data went to a file.
    await ctx.out(
      `exported ${records} records (${fields.join(', ')}) of ${ref} to ${path} as ${options.format}`,
    )
  })
}

/** stdout as a Writable that respects backpressure and is never closed by the pipeline. */
function stdoutSink(ctx: Context): Writable {
  return new Writable({
    write(chunk: Uint8Array, _encoding, callback) {
      write(ctx.io.stdout, chunk).then(() => callback(), callback)
    },
  })
}
