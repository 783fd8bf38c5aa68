/**
 * Drop: remove a layer from the branch's state. Nothing is deleted: snapshots and the
 * history keep the layer, and its objects stay until nothing reaches them (GC, design/0008).
 */
import { InvalidChangeError } from '../errors.js'
import type { Change, Manifest } from '../model.js'
import { layerConflict, type PreparedChange, refuseDependants } from './change.js'

export interface DropRequest {
  kind: 'drop'
  /** The layer's name. */
  layer: string
}

/** The layer to drop from `head`, checked: it exists and no other layer derives from it. */
function layerToDrop(head: Manifest, name: string, path: string) {
  const layer = head.layers.find((l) => l.name === name)
  if (layer === undefined) {
    const known = head.layers.map((l) => `'${l.name}'`).join(', ')
    const base = head.schema.fields.some((f) => f.name === name)
      ? `'${name}' is a base field, not a layer`
      : `no layer '${name}' (layers: ${known || 'none'})`
    throw new InvalidChangeError(path, base)
  }
  refuseDependants(head, name, path)
  return layer
}

export function prepareDrop(request: DropRequest, head: Manifest): PreparedChange {
  const path = 'drop.layer'
  if (typeof request.layer !== 'string')
    throw new InvalidChangeError(path, 'the layer to drop must be a name')
  const name = request.layer
  layerToDrop(head, name, path)
  return {
    kind: 'drop',
    objects: [],
    async apply(next) {
      const layer = layerToDrop(next, name, path)
      const bytes = { ...next.stats.bytes }
      delete bytes[name]
      return {
        layers: next.layers.filter((l) => l.name !== name),
        change: { kind: 'drop', layer: name, records: layer.records },
        message: `drop layer ${name} (${layer.records} records)`,
        stats: { ...next.stats, bytes },
      }
    },
    conflict(theirs: Change) {
      return layerConflict(name, theirs)
    },
  }
}
