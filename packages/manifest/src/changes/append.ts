/** Append: new buckets at the end of the timeline. */
import { InvalidChangeError } from '../errors.js'
import type { Change, Manifest } from '../model.js'
import { type BucketInput, normalizeBucket } from '../schema.js'
import { loadRoot, spliceTree } from '../tree.js'
import { countBytes, objectsOf, ofField, type PreparedChange } from './change.js'

export interface AppendRequest {
  kind: 'append'
  buckets: BucketInput[]
}

export function prepareAppend(request: AppendRequest, head: Manifest, now: number): PreparedChange {
  if (!Array.isArray(request.buckets) || request.buckets.length === 0) {
    throw new InvalidChangeError('append.buckets', 'an append needs at least one bucket')
  }
  const baseNames = head.schema.fields.map((f) => f.name)
  const buckets = request.buckets.map((b, i) =>
    normalizeBucket(b, `append.buckets[${i}]`, baseNames, { anchorsInline: true, now }),
  )
  const records = buckets.reduce((sum, b) => sum + b.records, 0)
  return {
    kind: 'append',
    objects: objectsOf(buckets, 'append.buckets'),
    async apply(head, context) {
      const root = await loadRoot(context.nodes, head.timeline, context)
      const total = root?.summary.buckets ?? 0
      const updated = await spliceTree(context.nodes, root, total, 0, buckets, context)
      const bytes = { ...head.stats.bytes }
      countBytes(bytes, buckets)
      return {
        timeline: updated?.cid ?? null,
        change: { kind: 'append', buckets: buckets.length, records },
        message: `append ${records} records`,
        stats: { records: head.stats.records + records, buckets: updated?.summary.buckets ?? 0, bytes },
      }
    },
    conflict(theirs: Change) {
      if (
        theirs.kind === 'drop-field' &&
        buckets.some((b) => Object.keys(b.fields).some((k) => ofField(k, theirs.field)))
      )
        return `field ${theirs.field} was dropped while this commit appended values of it`
      if (theirs.kind === 'migrate') return `field ${theirs.field} was re-encoded while this commit appended`
      if (theirs.kind === 'schema' && theirs.replaced.length > 0) {
        return `fields ${theirs.replaced.join(', ')} were redefined while this commit appended`
      }
      if (theirs.kind === 'schema' && theirs.added.length > 0) {
        return `fields ${theirs.added.join(', ')} were added while this commit appended records without them`
      }
      return undefined
    },
  }
}
