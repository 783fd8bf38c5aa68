import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openStore, type Store } from '@dreamdb/cas'
import { freshBucket, minioEndpoint, snapshotStore } from '@dreamdb/cas-tests'
import { describe, expect, it } from 'vitest'
import { compareRefs, Dataset, trainEmbeddingCodec } from '../src/index.js'
import { MNIST_SCHEMA, mnistRecords } from './helpers.js'

const STUDENT = 16

/** A fixed random projection of the teacher's 49-d embedding: the "student model". */
function student(embedding: number[]): Float32Array {
  const out = new Float32Array(STUDENT)
  for (let j = 0; j < STUDENT; j++) {
    for (let i = 0; i < embedding.length; i++) out[j]! += embedding[i]! * Math.sin((i + 1) * (j + 3))
  }
  return out
}

const cosine = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let dot = 0
  let na = 0
  let nb = 0
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!
    na += a[i]! ** 2
    nb += b[i]! ** 2
  }
  return dot / Math.sqrt(na * nb)
}

/** Anchors (1-based) of the k outputs nearest to the query by cosine, nearest first. */
function nearest(outputs: Float32Array[], query: Float32Array, k: number): bigint[] {
  return outputs
    .map((v, i) => [1 - cosine(v, query), BigInt(i + 1)] as const)
    .sort((a, b) => a[0] - b[0] || Number(a[1] - b[1]))
    .slice(0, k)
    .map(([, anchor]) => anchor)
}

async function stores(): Promise<[string, () => Promise<Store>][]> {
  const out: [string, () => Promise<Store>][] = [
    ['folder', async () => openStore(await mkdtemp(join(tmpdir(), 'dreamdb-distill-')))],
  ]
  const endpoint = minioEndpoint()
  if (endpoint !== undefined)
    out.push(['minio', async () => openStore(`${endpoint}/${await freshBucket(endpoint)}`)])
  return out
}

describe.each(await stores())('the distillation pattern on %s', { timeout: 30_000 }, (_kind, open) => {
  it('a compressed student layer on a branch: written with an operator-trained codec, decoded when iterated, compared', async () => {
    const store = await open()
    const records = mnistRecords(30)
    const src = await Dataset.create('mnist', { backend: store, schema: MNIST_SCHEMA })
    await src.appendMany(records, { bucketRecords: 64 })
    const outputs = records.map((r) => student(r.embedding))
    // The operator trains and publishes the student's index and compressor.
    const codec = await trainEmbeddingCodec(outputs, {
      backend: store,
      algorithm: 'dreamdb.ivf-cosine',
      dim: STUDENT,
      lists: 8,
      bits: 4,
    })
    for (const rerank of [true, false]) {
      const branch = await src.branch(`distill/student-${rerank}`)
      await branch.addEmbeddingLayer({
        name: 'embedding_student',
        parentField: 'image',
        dim: STUDENT,
        algorithm: 'dreamdb.ivf-cosine',
        spatialIndex: codec.spatialIndex,
        compressor: codec.compressor,
        rerank,
        samples: outputs.map((v, i) => [BigInt(i + 1), v] as const),
      })
      const layer = branch.manifest.layers.find((l) => l.name === 'embedding_student')!
      expect(layer.field).toMatchObject({ algorithm: 'dreamdb.ivf-cosine', rerank, metric: 'cosine' })
      expect(layer.field.family === 'embedding' && layer.field.compressor?.toString()).toBe(codec.compressor)
      const reopened = await Dataset.openRef(`distill/student-${rerank}`, { backend: store })
      let seen = 0
      for await (const batch of reopened.iterArrowBatches({
        fields: ['embedding_student', 'label'],
        batchSize: 50,
      })) {
        for (let i = 0; i < batch.numRows; i++) {
          const anchor = Number(batch.getChild('_anchor')!.get(i))
          const got = Float32Array.from(batch.getChild('embedding_student')!.get(i) as Iterable<number>)
          const want = outputs[anchor - 1]!
          if (rerank) expect(got).toEqual(want)
          else expect(cosine(got, want)).toBeGreaterThan(0.95) // 4-bit codes decoded
          seen++
        }
      }
      expect(seen).toBe(records.length)
      // Searched through the layer's own index (every list probed: the exact top 3 with rerank).
      const query = outputs[4]!
      const hits = await reopened.search('embedding_student', query, { k: 3, nprobe: 8 })
      if (rerank) expect([...hits.anchors]).toEqual(nearest(outputs, query, 3))
      else expect([...hits.anchors]).toContain(5n)
    }
    // Given again for anchor 1, the layer's latest value is the one searched, never both.
    const branch = await Dataset.openRef('distill/student-true', { backend: store })
    await branch.addEmbeddingLayer({
      name: 'embedding_student',
      parentField: 'image',
      dim: STUDENT,
      algorithm: 'dreamdb.ivf-cosine',
      spatialIndex: codec.spatialIndex,
      compressor: codec.compressor,
      rerank: true,
      samples: [[1n, outputs[9]!]],
    })
    const hits = await branch.search('embedding_student', outputs[9]!, { k: 3, nprobe: 8 })
    expect([...hits.anchors].slice(0, 2).sort()).toEqual([1n, 10n])
    expect(hits.anchors[2]).not.toBe(1n)
    const old = await branch.search('embedding_student', outputs[0]!, { k: 30, nprobe: 8 })
    expect(old.anchors.filter((a) => a === 1n)).toHaveLength(1)
    // A float32 layer is scanned exactly, also over its own segments.
    await branch.addEmbeddingLayer({
      name: 'embedding_plain',
      parentField: 'image',
      dim: STUDENT,
      samples: outputs.slice(0, 20).map((v, i) => [BigInt(i + 1), v] as const),
    })
    const plain = await branch.search('embedding_plain', outputs[4]!, { k: 3 })
    expect([...plain.anchors]).toEqual(nearest(outputs.slice(0, 20), outputs[4]!, 3))
    const table = await compareRefs({
      refs: ['distill/student-true', 'distill/student-false'],
      fields: ['embedding_student'],
      backend: store,
    })
    expect(table.numRows).toBe(records.length)
  })

  it('a codec for another dimension, or a half-named codec, is refused before anything is written', async () => {
    const store = await open()
    const src = await Dataset.create('mnist', { backend: store, schema: MNIST_SCHEMA })
    await src.appendMany(mnistRecords(3))
    const wide = await trainEmbeddingCodec(
      mnistRecords(3).map((r) => r.embedding),
      { backend: store, algorithm: 'dreamdb.ivf-cosine', dim: 49, lists: 2 },
    )
    const branch = await src.branch('distill/bad')
    const before = await snapshotStore(store)
    const base = {
      name: 'embedding_student',
      parentField: 'image',
      dim: STUDENT,
      algorithm: 'dreamdb.ivf-cosine',
      samples: [[1n, new Float32Array(STUDENT).fill(1)]] as const,
    }
    await expect(
      branch.addEmbeddingLayer({ ...base, spatialIndex: wide.spatialIndex, compressor: wide.compressor }),
    ).rejects.toMatchObject({
      code: 'ERR_DATASET_INVALID_OPTION',
      message: expect.stringContaining('dim 49'),
    })
    await expect(
      branch.addEmbeddingLayer({ ...base, spatialIndex: wide.spatialIndex }),
    ).rejects.toMatchObject({
      code: 'ERR_DATASET_INVALID_OPTION',
    })
    await expect(
      branch.addEmbeddingLayer({ ...base, algorithm: 'dreamdb.ivf-l2', metric: 'cosine' }),
    ).rejects.toMatchObject({ code: 'ERR_DATASET_INVALID_OPTION' })
    expect(await snapshotStore(store)).toEqual(before)
  })
})
