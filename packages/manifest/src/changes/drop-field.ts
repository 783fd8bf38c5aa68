/**
 * Drop a base field: the schema loses it and every bucket of the timeline loses its objects
 * (`<field>`, `<field>/<part>`), so no bucket of the new state names them and the name can be
 * given to a new field later (its older records then read as nulls, as for any added field).
 * Only tree nodes are written, no data object: one bucket list per leaf, like `migrate`'s.
 * Nothing is deleted: snapshots, the history and other branches keep the field, and its
 * objects stay until nothing reaches them (GC, design/0008).
 */
import { InvalidChangeError } from '../errors.js'
import type { Bucket, Change, Manifest } from '../model.js'
import { spliceTree, walkTree } from '../tree.js'
import { ofField, type PreparedChange, refuseDependants } from './change.js'

export interface DropFieldRequest {
  kind: 'drop-field'
  /** The base field's name. */
  field: string
}

/** The base field to drop from `head`, checked: it exists, is not the last, and no layer derives from it. */
function fieldToDrop(head: Manifest, name: string, path: string) {
  const field = head.schema.fields.find((f) => f.name === name)
  if (field === undefined) {
    const known = head.schema.fields.map((f) => `'${f.name}'`).join(', ')
    throw new InvalidChangeError(
      path,
      head.layers.some((l) => l.name === name)
        ? `'${name}' is a layer, not a base field (drop it as a layer)`
        : `no base field '${name}' (base fields: ${known})`,
    )
  }
  if (head.schema.fields.length === 1)
    throw new InvalidChangeError(path, `'${name}' is the only base field; a dataset keeps at least one`)
  refuseDependants(head, name, path)
  return field
}

export function prepareDropField(request: DropFieldRequest, head: Manifest): PreparedChange {
  const path = 'drop-field.field'
  if (typeof request.field !== 'string')
    throw new InvalidChangeError(path, 'the field to drop must be a name')
  const name = request.field
  fieldToDrop(head, name, path)
  return {
    kind: 'drop-field',
    objects: [],
    // Against the head it lands on: buckets appended or merged meanwhile lose the field too.
    async apply(next, context) {
      fieldToDrop(next, name, path)
      const rewritten: Bucket[] = []
      for await (const { bucket } of walkTree(context.nodes, next.timeline, context)) {
        const kept = Object.entries(bucket.fields).filter(([key]) => !ofField(key, name))
        rewritten.push({ ...bucket, fields: Object.fromEntries(kept) })
      }
      const rebuilt = await spliceTree(context.nodes, null, 0, 0, rewritten, context)
      const bytes = { ...next.stats.bytes }
      delete bytes[name]
      return {
        schema: { fields: next.schema.fields.filter((f) => f.name !== name) },
        timeline: rebuilt?.cid ?? null,
        change: { kind: 'drop-field', field: name, buckets: rewritten.length },
        message: `drop field ${name} (${rewritten.length} buckets)`,
        stats: { ...next.stats, bytes },
      }
    },
    conflict(theirs: Change) {
      if (theirs.kind === 'schema') return 'the schema changed concurrently'
      if (theirs.kind === 'migrate' && theirs.field === name)
        return `field '${name}' was migrated concurrently`
      if (theirs.kind === 'drop-field' && theirs.field === name)
        return `field '${name}' was dropped concurrently`
      return undefined
    },
  }
}
