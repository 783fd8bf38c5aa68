/**
 * `Dataset.merge`: another branch's appends and layers brought onto this branch in one
 * commit with two parents. Three states decide it: this branch's head, the head merged in,
 * and their merge base (the nearest manifest both histories hold).
 */
import type { AbortOptions } from '@dreamdb/cas'
import type { Bucket, Layer, Manifest, Repository, Source } from '@dreamdb/manifest'
import { CID } from 'multiformats/cid'
import type { Dataset } from './dataset.js'
import { MergeConflictError } from './errors.js'
import { assertMessage, type DatasetInternals } from './internal.js'

export interface MergeOptions extends AbortOptions {
  message?: string
}

/** What the branch merged in may have done since the merge base: its own records and layers. */
const MERGEABLE = new Set(['append', 'layer', 'drop'])

/**
 * The nearest manifest both histories hold: both walked at once, one manifest a side at a
 * time, every parent followed, so a fork point k commits back costs about 2k manifest reads.
 */
async function mergeBase(repo: Repository, a: CID, b: CID, options: AbortOptions): Promise<CID | undefined> {
  const sides = [a, b].map((head) => ({ queue: [head], seen: new Set<string>() }))
  while (sides.some((s) => s.queue.length > 0)) {
    for (const [i, side] of sides.entries()) {
      const cid = side.queue.shift()
      if (cid === undefined || side.seen.has(cid.toString())) continue
      if (sides[1 - i]!.seen.has(cid.toString())) return cid
      side.seen.add(cid.toString())
      side.queue.push(...(await repo.loadManifest(cid, options)).parents)
    }
  }
  return undefined
}

/** A layer as state: the same definition, parent and values. */
const layerKey = (l: Layer | undefined) =>
  l === undefined
    ? 'absent'
    : JSON.stringify({ field: l.field, parent: l.parent, segments: String(l.segments) })

/**
 * Merge `source` (a ref or manifest CID) into this branch: its buckets after the merge base's
 * are appended after this branch's, and its layers that changed since the base are set here
 * (or dropped). Refused, with nothing written, when the histories share nothing, when the
 * branch merged in did anything else since the base (a schema change, a compaction, a
 * migration, a restore or a merge of its own), or when both sides changed the same layer or
 * this side changed a field the merged records hold. Already merged: no commit.
 */
export async function merge(
  ds: Dataset,
  internals: DatasetInternals,
  source: Source,
  options: MergeOptions = {},
): Promise<string> {
  const ref = internals.writableRef()
  assertMessage(options.message)
  const repo = ds.repository
  const theirs = await repo.resolve(source, options)
  const from = theirs.target.manifest
  const ours = CID.parse(ds.currentManifest())
  const refuse = (reason: string): never => {
    throw new MergeConflictError(ref, typeof source === 'string' ? source : from.toString(), reason)
  }
  const base = await mergeBase(repo, ours, from, options)
  if (base === undefined) return refuse('their histories share no manifest')
  if (base.equals(from)) return ds.currentManifest()
  for (let cursor: CID = from; !cursor.equals(base); ) {
    const m = await repo.loadManifest(cursor, options)
    if (!MERGEABLE.has(m.change.kind) || m.parents.length !== 1)
      refuse(
        `it made a ${m.change.kind} (${cursor}) since the merge base ${base}; only appends and layers merge`,
      )
    cursor = m.parents[0]!
  }
  const baseState: Manifest = await repo.loadManifest(base, options)
  const buckets: Bucket[] = []
  for await (const { bucket } of repo.buckets(theirs.manifest, { ...options, from: baseState.stats.buckets }))
    buckets.push(bucket)
  const byName = (m: Manifest) => new Map(m.layers.map((l) => [l.name, l]))
  const [atBase, mine, theirLayers] = [byName(baseState), byName(ds.manifest), byName(theirs.manifest)]
  const layers = [...theirLayers.values()].filter((l) => layerKey(l) !== layerKey(atBase.get(l.name)))
  const dropped = [...atBase.keys()].filter((name) => !theirLayers.has(name))
  for (const name of [...layers.map((l) => l.name), ...dropped]) {
    if (layerKey(mine.get(name)) !== layerKey(atBase.get(name)))
      refuse(`both branches changed layer '${name}' since the merge base ${base}`)
  }
  const held = new Set(buckets.flatMap((b) => Object.keys(b.fields).map((key) => key.split('/')[0]!)))
  for (const name of held) {
    const field = (m: Manifest) => JSON.stringify(m.schema.fields.find((f) => f.name === name) ?? null)
    if (field(ds.manifest) !== field(baseState))
      refuse(`field '${name}' of the records merged in changed here since the merge base ${base}`)
  }
  if (buckets.length + layers.length + dropped.length === 0) return ds.currentManifest()
  const result = await repo.commit(
    ref,
    { kind: 'merge', from, buckets, layers, dropped },
    {
      ...options,
      // The three-way decision above read this branch's layers and fields at `ours`: a
      // commit since that may have changed them is refused; appends and compactions did not.
      since: ours,
      conflictsWith: ({ change }) =>
        change.kind === 'append' || change.kind === 'compact'
          ? undefined
          : `the branch moved (${change.kind}) after this dataset read it`,
    },
  )
  return await internals.moved(result.manifest, options)
}
