/**
 * `exportRecords`: a dataset's records as an Arrow IPC stream and as a Parquet file, read
 * back (apache-arrow, parquet-wasm) and compared value by value with what the dataset
 * yields, a layer included; the schema alone for a dataset without records; field names
 * checked before anything is read.
 */
import { openStore } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { type Table, tableFromIPC } from 'apache-arrow'
import * as parquet from 'parquet-wasm'
import { expect, it } from 'vitest'
import { exportRecords } from '../src/export.js'

const SCHEMA = {
  fields: [
    { name: 'image', family: 'binary' as const, media: 'image' as const },
    { name: 'embedding', family: 'embedding' as const, dim: 3 },
    { name: 'label', family: 'scalar' as const, kind: 'categorical' as const },
  ],
}
const record = (i: number) => ({
  image: Uint8Array.from({ length: 10 + i }, (_, k) => (i * 7 + k) % 256),
  embedding: [i, 1, -i / 2],
  label: ['cat', 'dog', 'bird'][i % 3]!,
})

async function corpus(records: number) {
  const ds = await Dataset.create('corpus', { backend: await openStore('memory://'), schema: SCHEMA })
  if (records > 0) {
    await ds.appendMany(
      Array.from({ length: records }, (_, i) => record(i)),
      { bucketRecords: 16 },
    )
    const anchors: bigint[] = []
    for await (const b of ds.iterArrowBatches({ fields: ['label'] })) {
      for (let i = 0; i < b.numRows; i++) anchors.push(b.getChild('_anchor')!.get(i) as bigint)
    }
    await ds.addScalarLayer(
      'prediction',
      'label',
      'categorical',
      anchors.map((a, i) => [a, i % 2 === 0 ? 'cat' : 'dog'] as const),
    )
  }
  return ds
}

const bytesOf = async (stream: NodeJS.ReadableStream) =>
  new Uint8Array(Buffer.concat((await (stream as import('node:stream').Readable).toArray()) as Buffer[]))

/** The exported table's rows equal what the dataset yields, by anchor. */
async function expectSame(ds: Dataset, table: Table, fields: string[]) {
  const truth = new Map<bigint, Record<string, unknown>>()
  for await (const b of ds.iterArrowBatches({ fields })) {
    for (let i = 0; i < b.numRows; i++) {
      truth.set(
        b.getChild('_anchor')!.get(i) as bigint,
        Object.fromEntries(fields.map((f) => [f, b.getChild(f)!.get(i)])),
      )
    }
  }
  expect(table.numRows).toBe(truth.size)
  expect(table.schema.fields.map((f) => f.name)).toEqual(['_anchor', ...fields])
  for (let i = 0; i < table.numRows; i++) {
    const want = truth.get(table.getChild('_anchor')!.get(i) as bigint)!
    for (const f of fields) {
      const got = table.getChild(f)!.get(i)
      const w = want[f]
      if (w instanceof Uint8Array) expect(Buffer.compare(Buffer.from(got), Buffer.from(w))).toBe(0)
      else if (typeof (w as { toArray?: unknown })?.toArray === 'function')
        expect(Array.from(got.toArray())).toEqual(Array.from((w as { toArray(): Float32Array }).toArray()))
      else expect(got).toEqual(w)
    }
  }
}

it('writes every field and layer as an Arrow stream and as Parquet, row groups of batchSize', async () => {
  const ds = await corpus(50)
  const arrow = await exportRecords(ds, { format: 'arrow', batchSize: 7 })
  expect(arrow.fields).toEqual(['image', 'embedding', 'label', 'prediction'])
  await expectSame(ds, tableFromIPC(await bytesOf(arrow.stream)), arrow.fields)
  expect(arrow.records()).toBe(50)

  const pq = await exportRecords(ds, {
    format: 'parquet',
    fields: ['label', 'embedding'],
    batchSize: 8,
    compression: 'zstd',
    metadata: { 'dreamdb.ref': 'corpus' },
  })
  const bytes = await bytesOf(pq.stream)
  expect(pq.records()).toBe(50)
  await expectSame(ds, tableFromIPC(parquet.readParquet(bytes).intoIPCStream()), ['label', 'embedding'])
  const file = await parquet.ParquetFile.fromFile(new Blob([bytes]))
  const meta = file.metadata()
  expect(meta.numRowGroups()).toBe(Math.ceil(50 / 8))
  expect(Object.fromEntries(meta.fileMetadata().keyValueMetadata())).toMatchObject({
    'dreamdb.ref': 'corpus',
    'dreamdb.manifest': ds.currentManifest(),
  })
  file.free()
  await ds.repository.store.close()
})

it('writes the schema and no rows for a dataset without records; unknown fields fail first', async () => {
  const ds = await corpus(0)
  for (const format of ['arrow', 'parquet'] as const) {
    const out = await exportRecords(ds, { format })
    const bytes = await bytesOf(out.stream)
    const table =
      format === 'arrow' ? tableFromIPC(bytes) : tableFromIPC(parquet.readParquet(bytes).intoIPCStream())
    expect(table.numRows).toBe(0)
    expect(table.schema.fields.map((f) => f.name)).toEqual(['_anchor', 'image', 'embedding', 'label'])
    expect(out.records()).toBe(0)
  }
  await expect(exportRecords(ds, { format: 'parquet', fields: ['label', 'nope'] })).rejects.toMatchObject({
    code: 'ERR_DATASET_UNKNOWN_FIELD',
  })
  await ds.repository.store.close()
})
