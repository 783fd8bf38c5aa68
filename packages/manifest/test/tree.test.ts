import { cidOf, openStore } from '@dreamdb/cas'
import { describe, expect, it } from 'vitest'
import type { Bucket } from '../src/index.js'
import {
  loadRoot,
  NodeStore,
  spliceTree,
  type TreeRoot,
  treeLeaves,
  treeNodes,
  walkTree,
} from '../src/tree.js'

function bucket(id: number): Bucket {
  return {
    records: 1 + (id % 7),
    anchorMin: BigInt(id * 10),
    anchorMax: BigInt(id * 10 + (id % 7)),
    anchorRanges: [{ start: BigInt(id * 10), count: 1 + (id % 7) }],
    timeMin: 1000 + id,
    timeMax: 1000 + id,
    fields: { x: { cid: cidOf(new TextEncoder().encode(String(id))), bytes: id } },
  }
}

async function contents(nodes: NodeStore, root: TreeRoot | null): Promise<number[]> {
  const out: number[] = []
  for await (const { bucket } of walkTree(nodes, root?.cid ?? null)) out.push(Number(bucket.anchorMin / 10n))
  return out
}

async function depth(nodes: NodeStore, root: TreeRoot | null): Promise<number> {
  return root === null ? 0 : (await nodes.load(root.cid)).level + 1
}

describe('bucket tree', () => {
  it('matches an array under 300 random splices, keeping summaries exact and leaves level', async () => {
    const nodes = new NodeStore(await openStore('memory://'))
    let root: TreeRoot | null = null
    const model: number[] = []
    let nextId = 0
    let seed = 12345
    const rand = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31
      return seed % n
    }
    for (let step = 0; step < 300; step++) {
      const start = rand(model.length + 1)
      const deleteCount = rand(Math.min(6, model.length - start) + 1)
      const insert = Array.from({ length: rand(step % 10 === 0 ? 40 : 5) }, () => nextId++)
      root = await spliceTree(nodes, root, start, deleteCount, insert.map(bucket), { fanout: 4 })
      model.splice(start, deleteCount, ...insert)
      expect(await contents(nodes, root), `step ${step}`).toEqual(model)
      expect(root?.summary.buckets ?? 0).toBe(model.length)
      expect(root?.summary.records ?? 0).toBe(model.reduce((sum, id) => sum + 1 + (id % 7), 0))
    }
    // All leaves at level 0, reached at the same depth.
    const levels = new Set<number>()
    async function visit(cid: import('multiformats/cid').CID, d: number): Promise<void> {
      const node = await nodes.load(cid)
      if ('buckets' in node) levels.add(d)
      else for (const child of node.children) await visit(child.node, d + 1)
    }
    if (root) await visit(root.cid, 0)
    expect(levels.size).toBe(1)
  })

  it('appends rewrite only the right spine: metadata written grows with log(buckets)', async () => {
    const nodes = new NodeStore(await openStore('memory://'))
    let root: TreeRoot | null = null
    const perAppend: number[] = []
    // Fanout 8 reaches the depth of 5 000 buckets at fanout 32 with a tenth of the appends.
    for (let i = 0; i < 500; i++) {
      const before = nodes.nodesWritten
      root = await spliceTree(nodes, root, i, 0, [bucket(i)], { fanout: 8 })
      perAppend.push(nodes.nodesWritten - before)
    }
    expect(await depth(nodes, root)).toBe(3) // 8^2 < 500 <= 8^3
    expect(Math.max(...perAppend.slice(-100))).toBeLessThanOrEqual(3)
  })

  it('walks from a position and prunes by time without reading skipped subtrees', async () => {
    const store = await openStore('memory://')
    const nodes = new NodeStore(store)
    const root = await spliceTree(
      nodes,
      null,
      0,
      0,
      Array.from({ length: 1000 }, (_, i) => bucket(i)),
      { fanout: 8 },
    )
    const from = []
    for await (const { position } of walkTree(nodes, root!.cid, { from: 990 })) from.push(position)
    expect(from).toEqual([990, 991, 992, 993, 994, 995, 996, 997, 998, 999])
    const cold = new NodeStore(store)
    let loads = 0
    const load = cold.load.bind(cold)
    cold.load = (cid, options) => {
      loads++
      return load(cid, options)
    }
    const hits = []
    for await (const { bucket: b } of walkTree(cold, root!.cid, { timeMin: 1500, timeMax: 1503 }))
      hits.push(b.timeMin)
    expect(hits).toEqual([1500, 1501, 1502, 1503])
    expect(loads).toBeLessThanOrEqual(8)
  })

  it('shares unchanged subtrees between versions', async () => {
    const nodes = new NodeStore(await openStore('memory://'))
    const a = await spliceTree(
      nodes,
      null,
      0,
      0,
      Array.from({ length: 500 }, (_, i) => bucket(i)),
      { fanout: 8 },
    )
    const b = await spliceTree(nodes, a, 500, 0, [bucket(500)], { fanout: 8 })
    const nodesA = new Set<string>()
    for await (const { cid } of treeNodes(nodes, a!.cid)) nodesA.add(cid.toString())
    let fresh = 0
    for await (const { cid } of treeNodes(nodes, b!.cid)) if (!nodesA.has(cid.toString())) fresh++
    expect(fresh).toBeLessThanOrEqual(4)
    expect(await loadRoot(nodes, b!.cid)).toMatchObject({ summary: { buckets: 501 } })
  })

  it('lists leaves from interior summaries only, in order, with positions and time pruning', async () => {
    const store = await openStore('memory://')
    const nodes = new NodeStore(store)
    const root = await spliceTree(
      nodes,
      null,
      0,
      0,
      Array.from({ length: 700 }, (_, i) => bucket(i)),
      { fanout: 8 },
    )
    const cold = new NodeStore(store)
    const loaded: string[] = []
    const load = cold.load.bind(cold)
    cold.load = (cid, options) => {
      loaded.push(cid.toString())
      return load(cid, options)
    }
    const leaves = []
    for await (const entry of treeLeaves(cold, root!.cid)) leaves.push(entry)
    // 700 buckets in leaves of 8: 88 leaves, read through 11 + 2 + 1 interior nodes.
    expect(leaves.length).toBe(88)
    expect(loaded.length).toBe(14)
    expect(leaves.reduce((n, l) => n + l.leaf.buckets, 0)).toBe(700)
    let position = 0
    for (const { position: p, leaf } of leaves) {
      expect(p).toBe(position)
      const node = await nodes.load(leaf.node)
      expect('buckets' in node && Number(node.buckets[0]!.anchorMin / 10n)).toBe(position)
      position += leaf.buckets
    }
    const pruned = []
    for await (const entry of treeLeaves(nodes, root!.cid, { timeMin: 1100, timeMax: 1120 }))
      pruned.push(entry.position)
    expect(pruned).toEqual([96, 104, 112, 120])
    const single = await spliceTree(nodes, null, 0, 0, [bucket(1)], { fanout: 8 })
    const one = []
    for await (const entry of treeLeaves(nodes, single!.cid)) one.push(entry)
    expect(one.map((e) => [e.position, e.leaf.buckets])).toEqual([[0, 1]])
  })
})
