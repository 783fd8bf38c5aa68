/** Migrate: re-encode one base field in every bucket; records, anchors and other fields stay. */
import { InvalidChangeError, InvalidSchemaError } from '../errors.js'
import type { Bucket, Change, FieldObject, Manifest } from '../model.js'
import { type FieldInput, normalizeBucket, normalizeField } from '../schema.js'
import { spliceTree, walkTree } from '../tree.js'
import { codecObjects, ofField, type PreparedChange } from './change.js'

/**
 * The field's new definition, and for every bucket in timeline order the objects that
 * replace the field's objects (`<field>` and `<field>/<part>`).
 */
export interface MigrateRequest {
  kind: 'migrate'
  field: FieldInput
  objects: Record<string, FieldObject>[]
}

export function prepareMigrate(request: MigrateRequest, head: Manifest, now: number): PreparedChange {
  const field = normalizeField(request.field, 'migrate.field')
  const current = head.schema.fields.find((f) => f.name === field.name)
  if (current === undefined)
    throw new InvalidSchemaError('migrate.field', `there is no base field '${field.name}'`)
  if (current.family !== field.family) {
    throw new InvalidSchemaError('migrate.field', `'${field.name}' is ${current.family}, not ${field.family}`)
  }
  if (!Array.isArray(request.objects) || request.objects.length !== head.stats.buckets) {
    throw new InvalidChangeError(
      'migrate.objects',
      `give the new objects of all ${head.stats.buckets} buckets, in order`,
    )
  }
  const name = field.name
  const replacements = request.objects.map(
    (entry, i) =>
      normalizeBucket(
        { records: 1, anchorMin: 0n, anchorMax: 0n, fields: entry },
        `migrate.objects[${i}]`,
        [name],
        {
          anchorsInline: false,
          now,
        },
      ).fields,
  )
  return {
    kind: 'migrate',
    objects: [
      ...replacements.flatMap((fields, i) =>
        Object.entries(fields).map(([key, o]) => ({ cid: o.cid, path: `migrate.objects[${i}]['${key}']` })),
      ),
      ...codecObjects([field]).map((cid) => ({ cid, path: 'migrate.field' })),
    ],
    async apply(head, context) {
      let fieldBytes = 0
      const rewritten: Bucket[] = []
      for await (const { position, bucket } of walkTree(context.nodes, head.timeline, context)) {
        const kept = Object.entries(bucket.fields).filter(([key]) => !ofField(key, name))
        const fields = { ...Object.fromEntries(kept), ...replacements[position]! }
        for (const o of Object.values(replacements[position]!)) fieldBytes += o.bytes
        rewritten.push({ ...bucket, fields })
      }
      if (rewritten.length !== replacements.length) {
        throw new InvalidChangeError(
          'migrate.objects',
          `the timeline has ${rewritten.length} buckets, not ${replacements.length}`,
        )
      }
      const rebuilt = await spliceTree(context.nodes, null, 0, 0, rewritten, context)
      return {
        schema: { fields: head.schema.fields.map((f) => (f.name === name ? field : f)) },
        timeline: rebuilt?.cid ?? null,
        change: { kind: 'migrate', field: name, buckets: rewritten.length },
        message: `migrate ${name} (${rewritten.length} buckets re-encoded)`,
        stats: { ...head.stats, bytes: { ...head.stats.bytes, [name]: fieldBytes } },
      }
    },
    conflict(theirs: Change) {
      if (theirs.kind === 'layer') return undefined
      return `a concurrent ${theirs.kind} changed the buckets this migration re-encodes`
    },
  }
}
