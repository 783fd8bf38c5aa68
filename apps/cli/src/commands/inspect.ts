import { parseCid, type Store } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { type Inspection, inspect as inspectState, type LogEntry, log } from '@dreamdb/manifest'
import { type Context, sourceOf, withRepository } from '../context.js'
import { DamagedStateError } from '../errors.js'
import { formatBytes, formatTime } from '../render/text.js'
import { describeChange, historyLines } from './log.js'

/** The field whose values split the records (train, validation, …), when the schema has one. */
export const SPLIT_FIELD = 'split'

export interface SplitCounts {
  field: string
  /** Records per value, in descending order of count. */
  counts: Record<string, number>
}

export interface BadObject {
  cid: string
  /** `ERR_CAS_INTEGRITY` (its bytes do not match the CID) or `ERR_CAS_NOT_FOUND` (missing). */
  code: string
  message: string
}

export interface Verification {
  /** Objects read back and verified. */
  objects: number
  bytes: number
  /** Every object that is missing or does not match its CID (empty when the state is whole). */
  bad: BadObject[]
}

export interface InspectResult extends Inspection {
  backend: string
  /** Records per split, read from the split column alone; null when there is no split field. */
  splits: SplitCounts | null
  /** Every manifest from this one back to the root, newest first, with the refs at each. */
  history: LogEntry[]
  /** Refs (other than this one) that point at a manifest of this history. */
  pointingInto: { name: string; kind: 'branch' | 'snapshot'; manifest: string }[]
  /** With --verify: every object read back and checked against its CID. */
  verified: Verification | null
}

export interface InspectOptions {
  splits?: boolean
  verify?: boolean
  /** History entries shown in text (JSON has them all). */
  history?: number
}

/** Buckets from which `inspect` suggests `compact` when they are small on average. */
const SMALL_BUCKETS_HINT = 16

/** Count the records per split value by iterating only the split column. */
async function countSplits(store: Store, manifest: string, signal: AbortSignal): Promise<SplitCounts | null> {
  const ds = await Dataset.openAt(manifest, { backend: store, signal })
  const field = ds.manifest.schema.fields.find((f) => f.name === SPLIT_FIELD)
  if (field?.family !== 'scalar' || (field.kind !== 'categorical' && field.kind !== 'string')) return null
  const counts = new Map<string, number>()
  for await (const batch of ds.iterArrowBatches({ fields: [SPLIT_FIELD], batchSize: 65_536, signal })) {
    const column = batch.getChild(SPLIT_FIELD)!
    for (let i = 0; i < batch.numRows; i++) {
      const key = String(column.get(i))
      counts.set(key, (counts.get(key) ?? 0) + 1)
    }
  }
  const sorted = [...counts].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1))
  return { field: SPLIT_FIELD, counts: Object.fromEntries(sorted) }
}

const DAMAGE = new Set(['ERR_CAS_INTEGRITY', 'ERR_CAS_NOT_FOUND'])

/**
 * Read every object back; the store checks each against its CID. A missing or corrupt object
 * is noted and the reading goes on after it, so an audit names all the damage at once.
 */
async function verifyObjects(store: Store, cids: string[], signal: AbortSignal): Promise<Verification> {
  let objects = 0
  let bytes = 0
  const bad: BadObject[] = []
  // getMany yields in input order: when it fails, the object at `next` is the one that failed.
  for (let next = 0; next < cids.length; ) {
    try {
      for await (const got of store.getMany(
        cids.slice(next).map((c) => parseCid(c)),
        { signal },
      )) {
        next++
        objects++
        bytes += got.bytes.byteLength
      }
    } catch (error) {
      const code = (error as { code?: unknown }).code
      if (typeof code !== 'string' || !DAMAGE.has(code)) throw error
      bad.push({ cid: cids[next]!, code, message: (error as Error).message })
      next++
    }
  }
  return { objects, bytes, bad }
}

function describeField(field: Record<string, unknown>): string {
  switch (field.family) {
    case 'binary':
      return `binary ${field.media}`
    case 'embedding':
      return [
        `embedding dim ${field.dim} ${field.metric}`,
        field.algorithm ? String(field.algorithm) : '',
        field.rerank ? 'rerank' : '',
      ]
        .filter((s) => s !== '')
        .join(' ')
    default:
      return `scalar ${field.kind}`
  }
}

export async function inspect(ctx: Context, ref: string, options: InspectOptions): Promise<void> {
  await withRepository(ctx, async (repo, store) => {
    const source = sourceOf(ref)
    const inspection = await inspectState(repo, source, { signal: ctx.signal })
    const history = await log(repo, source, { signal: ctx.signal })
    const pointingInto = history.flatMap((entry) =>
      entry.refs
        .filter((r) => r.name !== inspection.ref?.name)
        .map((r) => ({ name: r.name, kind: r.kind, manifest: entry.manifest })),
    )
    const splits = options.splits === false ? null : await countSplits(store, inspection.manifest, ctx.signal)
    const verified = options.verify
      ? await verifyObjects(
          store,
          inspection.objects.map((o) => o.cid),
          ctx.signal,
        )
      : null
    const result: InspectResult = {
      backend: store.url,
      ...inspection,
      splits,
      history,
      pointingInto,
      verified,
    }
    if (ctx.json) await ctx.outJson('inspect', result)
    else await printInspection(ctx, ref, result, options.history ?? 10)
    if (verified && verified.bad.length > 0) {
      const missing = verified.bad.filter((b) => b.code === 'ERR_CAS_NOT_FOUND').length
      throw new DamagedStateError(
        `${verified.bad.length} of ${inspection.objects.length} objects of ${ref} are damaged: ${verified.bad.length - missing} corrupt, ${missing} missing`,
        'the store is damaged; restore those objects from a copy (dreamdb fsck checks every ref)',
      )
    }
  })
}

async function printInspection(ctx: Context, asked: string, r: InspectResult, historyShown: number) {
  const { paint } = ctx
  const row = async (label: string, text: string) => ctx.out(`${paint('bold', label.padEnd(13))}${text}`)
  const pad = ' '.repeat(13)
  await row('ref', r.ref ? `${r.ref.name} (${r.ref.kind})` : `${asked} (a manifest)`)
  await row('manifest', r.manifest)
  await row('timeline', r.timeline ?? '(empty)')
  const head = r.history[0]
  await row('committed', `${formatTime(r.timestamp)}  ${head ? describeChange(head.change) : ''}`)
  if (r.message) await row('message', r.message)
  const stored = Object.values(r.stats.bytes).reduce((a, b) => a + b, 0)
  await row('records', `${r.stats.records} in ${r.stats.buckets} buckets, ${formatBytes(stored)} stored`)
  // Smaller than any bucket an append of many records makes (1 024 at least): many small
  // appends, each its own bucket, which iteration reads one small object at a time.
  const perBucket = r.stats.buckets === 0 ? 0 : r.stats.records / r.stats.buckets
  if (r.ref?.kind === 'branch' && r.stats.buckets >= SMALL_BUCKETS_HINT && perBucket < 1024) {
    await ctx.out(
      `${pad}${paint('dim', `${Math.round(perBucket)} records a bucket on average: dreamdb compact ${r.ref.name} merges them`)}`,
    )
  }
  if (r.splits) {
    await row(
      'splits',
      Object.entries(r.splits.counts)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ') || '(no records)',
    )
  }
  const fields = r.schema.fields
  const nameWidth = Math.max(
    ...fields.map((f) => String(f.name).length),
    ...r.layers.map((l) => l.name.length),
  )
  for (const [i, field] of fields.entries()) {
    const bytes = r.stats.bytes[String(field.name)]
    const text = `${String(field.name).padEnd(nameWidth)}  ${describeField(field).padEnd(28)}${bytes ? formatBytes(bytes) : ''}`
    if (i === 0) await row('schema', text)
    else await ctx.out(pad + text)
  }
  if (r.layers.length === 0) await row('layers', '(none)')
  for (const [i, layer] of r.layers.entries()) {
    const text = `${layer.name.padEnd(nameWidth)}  ${describeField(layer.field).padEnd(28)}from ${layer.parent}: ${layer.records} values in ${layer.segments} segment${layer.segments === 1 ? '' : 's'}, ${formatBytes(layer.bytes)}`
    if (i === 0) await row('layers', text)
    else await ctx.out(pad + text)
  }
  await row(
    'history',
    `${r.depth} manifest${r.depth === 1 ? '' : 's'} back to the root${r.history.length > historyShown ? ` (newest ${historyShown} shown; --json has all)` : ''}`,
  )
  for (const line of historyLines(ctx, r.history.slice(0, historyShown), pad)) await ctx.out(line)
  await row(
    'points into',
    r.pointingInto.length === 0
      ? '(no other ref points at this history)'
      : r.pointingInto.map((p) => `${p.name} (${p.kind})`).join(', '),
  )
  await row(
    'built on by',
    r.referencedBy.length === 0
      ? '(no other ref has this state in its history)'
      : r.referencedBy.map((p) => `${p.name} (${p.kind})`).join(', '),
  )
  const objectBytes = r.objects.reduce((sum, o) => sum + (o.bytes ?? 0), 0)
  await row(
    'objects',
    `${r.objects.length} referenced${objectBytes ? ` (${formatBytes(objectBytes)} of data)` : ''}${
      r.verified === null
        ? ''
        : r.verified.bad.length === 0
          ? paint(
              'green',
              `, all ${r.verified.objects} read back and verified (${formatBytes(r.verified.bytes)})`,
            )
          : paint(
              'red',
              `, ${r.verified.objects} verified (${formatBytes(r.verified.bytes)}), ${r.verified.bad.length} damaged:`,
            )
    }`,
  )
  for (const bad of r.verified?.bad ?? []) {
    await ctx.out(
      `${pad}${paint('red', bad.code === 'ERR_CAS_NOT_FOUND' ? 'missing' : 'corrupt')} ${bad.cid}`,
    )
  }
}
