/** Layer: add or extend values for some anchors under a new field name, never touching base data. */
import { InvalidChangeError } from '../errors.js'
import type { Change, Layer, Manifest } from '../model.js'
import { type BucketInput, checkLayer, type FieldInput, normalizeBucket } from '../schema.js'
import { loadRoot, spliceTree } from '../tree.js'
import { countBytes, layerConflict, objectsOf, type PreparedChange } from './change.js'

export interface LayerRequest {
  kind: 'layer'
  name: string
  parent: string
  field: FieldInput
  segments: BucketInput[]
}

export function prepareLayer(request: LayerRequest, head: Manifest, now: number): PreparedChange {
  const field = checkLayer(head, request)
  if (!Array.isArray(request.segments) || request.segments.length === 0) {
    throw new InvalidChangeError(`layer '${field.name}'`, 'a layer needs at least one segment')
  }
  const segments = request.segments.map((s, i) =>
    normalizeBucket(s, `layer '${field.name}'.segments[${i}]`, [field.name], { anchorsInline: false, now }),
  )
  const records = segments.reduce((sum, b) => sum + b.records, 0)
  const name = field.name
  return {
    kind: 'layer',
    objects: objectsOf(segments, `layer '${name}'`),
    async apply(head, context) {
      const existing = head.layers.find((l) => l.name === name)
      const root = await loadRoot(context.nodes, existing?.segments ?? null, context)
      const updated = await spliceTree(context.nodes, root, root?.summary.buckets ?? 0, 0, segments, context)
      const bytes = { ...head.stats.bytes }
      countBytes(bytes, segments)
      const layer: Layer = {
        name,
        parent: request.parent,
        field,
        segments: updated?.cid ?? null,
        records: (existing?.records ?? 0) + records,
        bytes: updated?.summary.bytes ?? 0,
      }
      const layers = [...head.layers.filter((l) => l.name !== name), layer].sort((a, b) =>
        a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
      )
      return {
        layers,
        change: { kind: 'layer', name, segments: segments.length, records },
        message: `${existing ? 'extend' : 'add'} layer ${name} (${records} records)`,
        stats: { ...head.stats, bytes },
      }
    },
    conflict(theirs: Change) {
      // A new layer derives from the parent it names: one dropped meanwhile is gone.
      if (theirs.kind === 'drop' && theirs.layer === request.parent)
        return `layer '${request.parent}' was dropped concurrently`
      if (theirs.kind === 'drop-field' && theirs.field === request.parent)
        return `field '${request.parent}' was dropped concurrently`
      return layerConflict(name, theirs)
    },
  }
}
