/**
 * Merge: another branch's appends and layer changes since the two branches' merge base,
 * brought onto this branch in one commit whose second parent is the head merged in. The
 * caller (`Dataset.merge`) finds the merge base and hands over what the other branch did
 * since, as state: its buckets after the base's (appended here, after this branch's own) and
 * its layers that differ from the base's (set here) or that it dropped. Records keep their
 * anchors: anchors are unique across branches (design/0003, "Anchors").
 */
import { CID } from 'multiformats/cid'
import { InvalidChangeError } from '../errors.js'
import type { Bucket, Change, Layer, Manifest } from '../model.js'
import { loadRoot, spliceTree } from '../tree.js'
import { codecObjects, countBytes, objectsOf, ofField, type PreparedChange } from './change.js'

export interface MergeRequest {
  kind: 'merge'
  /** The head merged in: the merge commit's second parent. */
  from: CID
  /** Its buckets after the merge base's, in order. */
  buckets: Bucket[]
  /** Its layers that differ from the merge base's (written or changed since), to set here. */
  layers: Layer[]
  /** Layers the merge base has and it dropped since. */
  dropped: string[]
}

export function prepareMerge(request: MergeRequest, head: Manifest): PreparedChange {
  const { from, buckets, layers, dropped } = request
  if (CID.asCID(from) === null) throw new InvalidChangeError('merge.from', 'the head merged in must be a CID')
  if (!Array.isArray(buckets) || !Array.isArray(layers) || !Array.isArray(dropped))
    throw new InvalidChangeError('merge', 'buckets, layers and dropped must be lists')
  if (buckets.length === 0 && layers.length === 0 && dropped.length === 0)
    throw new InvalidChangeError('merge', 'nothing to merge')
  const names = [...layers.map((l) => l.name), ...dropped]
  if (new Set(names).size !== names.length)
    throw new InvalidChangeError('merge.layers', 'a layer is named twice')
  const held = new Set(buckets.flatMap((b) => Object.keys(b.fields).map((key) => key.split('/')[0]!)))
  const records = buckets.reduce((n, b) => n + b.records, 0)
  /** The next state's layers, checked: each names a field or layer of it as its parent. */
  const mergedLayers = (next: Manifest): Layer[] => {
    const missing = [...held].filter((name) => !next.schema.fields.some((f) => f.name === name))
    if (missing.length > 0)
      throw new InvalidChangeError('merge.buckets', `field ${missing.join(', ')} is not a base field here`)
    const result = [...next.layers.filter((l) => !names.includes(l.name)), ...layers].sort((a, b) =>
      a.name < b.name ? -1 : 1,
    )
    const known = new Set([...next.schema.fields.map((f) => f.name), ...result.map((l) => l.name)])
    for (const layer of result) {
      if (!known.has(layer.parent))
        throw new InvalidChangeError(
          'merge.layers',
          `layer '${layer.name}' derives from '${layer.parent}', which is not here`,
        )
    }
    return result
  }
  mergedLayers(head)
  return {
    kind: 'merge',
    objects: [
      ...objectsOf(buckets, 'merge.buckets'),
      ...layers.flatMap((l) =>
        l.segments === null ? [] : [{ cid: l.segments, path: `merge.layers['${l.name}']` }],
      ),
      ...codecObjects(layers.map((l) => l.field)).map((cid) => ({ cid, path: 'merge.layers' })),
    ],
    async apply(next, context) {
      const nextLayers = mergedLayers(next)
      const root = await loadRoot(context.nodes, next.timeline, context)
      const updated =
        buckets.length === 0
          ? root
          : await spliceTree(context.nodes, root, root?.summary.buckets ?? 0, 0, buckets, context)
      const bytes = { ...next.stats.bytes }
      countBytes(bytes, buckets)
      for (const name of dropped) delete bytes[name]
      for (const layer of layers) bytes[layer.name] = layer.bytes
      return {
        timeline: updated?.cid ?? null,
        layers: nextLayers,
        change: { kind: 'merge', from, buckets: buckets.length, records, layers: names },
        message: `merge ${from}: ${records} records${names.length > 0 ? `, layers ${names.join(', ')}` : ''}`,
        stats: { records: next.stats.records + records, buckets: updated?.summary.buckets ?? 0, bytes },
        merged: from,
      }
    },
    conflict(theirs: Change) {
      const layer = (name: string) => names.includes(name)
      if ((theirs.kind === 'layer' && layer(theirs.name)) || (theirs.kind === 'drop' && layer(theirs.layer)))
        return `layer '${theirs.kind === 'layer' ? theirs.name : theirs.layer}' was written concurrently`
      if (theirs.kind === 'merge' && theirs.layers.some(layer))
        return `layers ${theirs.layers.filter(layer).join(', ')} were merged concurrently`
      if (theirs.kind === 'schema') return 'the schema changed concurrently'
      if (theirs.kind === 'migrate') return `field ${theirs.field} was re-encoded concurrently`
      if (theirs.kind === 'drop-field' && [...held].some((name) => ofField(name, theirs.field)))
        return `field ${theirs.field} was dropped concurrently`
      return undefined
    },
  }
}
