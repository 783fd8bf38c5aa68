import { openStore, type Store } from '@dreamdb/cas'
import { Dataset } from '../src/index.js'

export const SCHEMA = {
  fields: [
    { name: 'image', family: 'binary' as const, media: 'image' as const },
    { name: 'embedding', family: 'embedding' as const, dim: 8 },
    { name: 'label', family: 'scalar' as const, kind: 'categorical' as const },
  ],
}

/** A deterministic record: its id is recoverable from the embedding and the image bytes. */
export function record(id: number) {
  const embedding = Array.from({ length: 8 }, (_, d) => (d === 0 ? id : Math.sin(id * (d + 1))))
  return { image: new TextEncoder().encode(`image-${id}`), embedding, label: `class-${id % 5}` }
}

export async function dataset(count: number, options: { bucketRecords?: number; store?: Store } = {}) {
  const store = options.store ?? (await openStore('memory://'))
  const ds = await Dataset.create('corpus', { backend: store, schema: SCHEMA })
  for (let start = 0; start < count; start += 50) {
    const ids = Array.from({ length: Math.min(50, count - start) }, (_, i) => start + i)
    await ds.appendMany(ids.map(record), { bucketRecords: options.bucketRecords ?? 20 })
  }
  return { ds, store }
}

/** The record ids a batch holds, read back from the embedding's first component. */
export function idsOf(batch: import('apache-arrow').RecordBatch): number[] {
  const column = batch.getChild('embedding')
  return Array.from({ length: batch.numRows }, (_, i) =>
    (column!.get(i) as { get(k: number): number }).get(0),
  )
}
