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

/** Every manifest `head`'s history holds (every parent followed): one read each. */
async function history(repo: Repository, head: CID, options: AbortOptions): Promise<Set<string>> {
  const seen = new Set<string>()
  const queue = [head]
  for (let cid = queue.shift(); cid !== undefined; cid = queue.shift()) {
    if (seen.has(cid.toString())) continue
    seen.add(cid.toString())
    queue.push(...(await repo.loadManifest(cid, options)).parents)
  }
  return seen
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
  // The merge base: the newest manifest of the other side's first-parent chain that this
  // branch's history holds. That chain may only hold appends and layer writes down to it (no
  // merge, so every manifest the other side has is on it), so no other common manifest can
  // be newer. A search by depth from both heads is not enough: an older common manifest
  // (the first parent of an earlier merge) can be closer to this head than the one merged.
  const ourHistory = await history(repo, ours, options)
  let base = from
  while (!ourHistory.has(base.toString())) {
    const m: Manifest = await repo.loadManifest(base, options)
    if (m.parents.length === 0) refuse('their histories share no manifest')
    if (!MERGEABLE.has(m.change.kind) || m.parents.length !== 1)
      refuse(
        `it made a ${m.change.kind} (${base}) since the two branches diverged; only appends and layers merge`,
      )
    base = m.parents[0]!
  }
  if (base.equals(from)) return ds.currentManifest()
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
