/** Compact: replace a run of timeline buckets by fewer ones holding the same records. */
import { InvalidChangeError } from '../errors.js'
import type { Bucket, Change, Manifest } from '../model.js'
import { type BucketInput, normalizeBucket } from '../schema.js'
import { loadRoot, spliceTree, walkTree } from '../tree.js'
import { countBytes, objectsOf, type PreparedChange } from './change.js'

export interface CompactRequest {
  kind: 'compact'
  start: number
  count: number
  replacement: BucketInput[]
}

export function prepareCompact(request: CompactRequest, head: Manifest, now: number): PreparedChange {
  const { start, count } = request
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(count) || start < 0 || count < 2) {
    throw new InvalidChangeError('compact', `start ${start} and count ${count} must be integers, count >= 2`)
  }
  if (start + count > head.stats.buckets) {
    throw new InvalidChangeError(
      'compact',
      `buckets [${start}, ${start + count}) pass the end (${head.stats.buckets})`,
    )
  }
  const baseNames = head.schema.fields.map((f) => f.name)
  const replacement = request.replacement.map((b, i) =>
    normalizeBucket(b, `compact.replacement[${i}]`, baseNames, { anchorsInline: true, now }),
  )
  return {
    kind: 'compact',
    objects: objectsOf(replacement, 'compact.replacement'),
    async apply(head, context) {
      const replaced: Bucket[] = []
      for await (const { bucket } of walkTree(context.nodes, head.timeline, { ...context, from: start })) {
        if (replaced.length === count) break
        replaced.push(bucket)
      }
      assertSameRecords(replaced, replacement)
      const root = await loadRoot(context.nodes, head.timeline, context)
      const updated = await spliceTree(context.nodes, root, start, count, replacement, context)
      const bytes = { ...head.stats.bytes }
      countBytes(bytes, replacement)
      countBytes(bytes, replaced, -1)
      return {
        timeline: updated?.cid ?? null,
        change: { kind: 'compact', start, replaced: count, buckets: replacement.length },
        message: `compact ${count} buckets into ${replacement.length}`,
        stats: { records: head.stats.records, buckets: updated?.summary.buckets ?? 0, bytes },
      }
    },
    conflict(theirs: Change) {
      if (theirs.kind === 'migrate') return `field ${theirs.field} was migrated concurrently`
      if (theirs.kind === 'compact') return 'the timeline was compacted concurrently'
      if (theirs.kind === 'schema') return 'the schema changed concurrently'
      if (theirs.kind === 'drop-field') return `field ${theirs.field} was dropped concurrently`
      return undefined
    },
  }
}

/** A compaction must keep every record: the same anchors in the same order, the same times. */
function assertSameRecords(replaced: Bucket[], replacement: Bucket[]): void {
  const flatten = (buckets: Bucket[]): string =>
    buckets
      .flatMap((b) => b.anchorRanges ?? [])
      .reduce<{ start: bigint; count: number }[]>((out, r) => {
        const last = out[out.length - 1]
        if (last !== undefined && last.start + BigInt(last.count) === r.start) last.count += r.count
        else out.push({ ...r })
        return out
      }, [])
      .map((r) => `${r.start}+${r.count}`)
      .join(',')
  if (flatten(replaced) !== flatten(replacement)) {
    throw new InvalidChangeError(
      'compact.replacement',
      'the replacement must hold exactly the same anchors in the same order',
    )
  }
  const span = (buckets: Bucket[]) => [
    Math.min(...buckets.map((b) => b.timeMin)),
    Math.max(...buckets.map((b) => b.timeMax)),
  ]
  const [a, b] = [span(replaced), span(replacement)]
  if (a[0] !== b[0] || a[1] !== b[1]) {
    throw new InvalidChangeError(
      'compact.replacement',
      `the replacement must keep the time range [${a[0]}, ${a[1]}]`,
    )
  }
}
