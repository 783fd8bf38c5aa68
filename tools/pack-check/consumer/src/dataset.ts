/**
 * The dataset workflow from the packed @dreamdb/dataset on a folder: create, append,
 * snapshot, append more, iterate the snapshot. The batches must be instances of the
 * consumer's own apache-arrow (a peer dependency: one copy, whichever 21.x minor).
 */
import assert from 'node:assert/strict'
import { openStore } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { RecordBatch } from 'apache-arrow'

const folder = process.argv[2]
assert.ok(folder, 'usage: dataset.js <folder>')
const store = await openStore(folder)
try {
  const ds = await Dataset.create('pack-check', {
    backend: store,
    schema: {
      fields: [
        { name: 'embedding', family: 'embedding', dim: 4 },
        { name: 'label', family: 'scalar', kind: 'categorical' },
      ],
    },
  })
  const records = Array.from({ length: 100 }, (_, i) => ({
    embedding: [i, 1, 0, -i],
    label: i % 2 === 0 ? 'even' : 'odd',
  }))
  await ds.appendMany(records)
  const snap = await ds.snapshot('pack-check-v1')
  await ds.appendMany(records.slice(0, 10))

  const pinned = await Dataset.openAt(snap, { backend: store })
  let rows = 0
  const labels = new Set<string>()
  for await (const batch of pinned.iterArrowBatches({ batchSize: 32, fields: ['embedding', 'label'] })) {
    assert.ok(batch instanceof RecordBatch, "a batch is not the consumer's apache-arrow RecordBatch")
    rows += batch.numRows
    for (let i = 0; i < batch.numRows; i++) labels.add(String(batch.getChild('label')?.get(i)))
  }
  assert.equal(rows, 100, 'the snapshot holds the first 100 records')
  assert.deepEqual([...labels].sort(), ['even', 'odd'])
  console.log(`  dataset: create, append, snapshot ${snap.label}, append, iterate ${rows} rows ok`)
} finally {
  await store.close()
}
