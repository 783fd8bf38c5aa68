import { CID } from 'multiformats/cid'
import type { Manifest, RefTarget, TreeNode } from '../../src/index.js'

// Fixed CIDs (sha2-256 of the strings 'a', 'b', ...) so the fixtures never change.
const cid = (s: string) => CID.parse(s)
export const CID_A = cid('bafkreigks6arfsq3xxfpvqrrwonchxcnu6do76auprhhfomao6c273sixm')
export const CID_B = cid('bafyreib6epubmabzlffdhckpmvsodmjuro6xuaei2qwevs3t52xnlhaatu')

export const SAMPLE_MANIFEST: Manifest = {
  schema: {
    fields: [
      { name: 'image', family: 'binary', media: 'image' },
      {
        name: 'embedding',
        family: 'embedding',
        dim: 512,
        metric: 'cosine',
        algorithm: 'dreamdb.ivf-cosine',
        spatialIndex: CID_A,
        compressor: CID_A,
        rerank: true,
      },
      { name: 'label', family: 'scalar', kind: 'categorical' },
    ],
  },
  timeline: CID_B,
  layers: [
    {
      name: 'prediction',
      parent: 'embedding',
      field: { name: 'prediction', family: 'scalar', kind: 'categorical' },
      segments: CID_B,
      records: 10,
      bytes: 120,
    },
  ],
  parents: [CID_B],
  message: 'append 10 records',
  timestamp: 1_790_000_000_000,
  change: { kind: 'append', buckets: 1, records: 10 },
  stats: { records: 10, buckets: 1, bytes: { image: 1000, embedding: 400, label: 50, prediction: 120 } },
}

export const SAMPLE_LEAF: TreeNode = {
  level: 0,
  buckets: [
    {
      records: 10,
      anchorMin: 1n,
      anchorMax: 2n ** 63n + 5n,
      anchorRanges: [
        { start: 1n, count: 5 },
        { start: 2n ** 63n + 1n, count: 5 },
      ],
      timeMin: 1_790_000_000_000,
      timeMax: 1_790_000_000_500,
      fields: {
        image: { cid: CID_A, bytes: 1000 },
        'image/index': { cid: CID_A, bytes: 80 },
        label: { cid: CID_A, bytes: 50 },
      },
    },
  ],
}

export const SAMPLE_BRANCH: TreeNode = {
  level: 1,
  children: [
    {
      node: CID_B,
      buckets: 32,
      records: 320,
      bytes: 4096,
      anchorMin: 1n,
      anchorMax: 320n,
      timeMin: 1_790_000_000_000,
      timeMax: 1_790_000_009_000,
    },
  ],
}

export const SAMPLE_REF: RefTarget = { kind: 'snapshot', manifest: CID_B, timeline: CID_B }
