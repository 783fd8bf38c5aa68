import type { Repository } from '../../src/index.js'

export const SCHEMA = {
  fields: [
    { name: 'image', family: 'binary' as const, media: 'image' as const },
    { name: 'label', family: 'scalar' as const, kind: 'categorical' as const },
  ],
}

/**
 * Append `count` records to `ref` the way the dataset layer will: mint anchors, write one
 * object per field, then commit a bucket that references them. The objects here are
 * JSON, which is all the manifest layer needs to see.
 */
export async function appendRecords(repo: Repository, ref: string, count: number, tag = '') {
  const start = await repo.mintAnchors(count)
  const anchors = Array.from({ length: count }, (_, i) => (start + BigInt(i)).toString())
  const fields: Record<string, { cid: import('multiformats/cid').CID; bytes: number }> = {}
  for (const name of ['image', 'label']) {
    const bytes = new TextEncoder().encode(JSON.stringify({ field: name, tag, anchors }))
    fields[name] = { cid: await repo.store.put(bytes), bytes: bytes.byteLength }
  }
  const result = await repo.commit(ref, {
    kind: 'append',
    buckets: [{ records: count, anchorRanges: [{ start, count }], fields }],
  })
  return { ...result, start }
}
