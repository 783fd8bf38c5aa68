/**
 * Idempotent commits against a real MinIO behind a fault-injecting proxy: writer A's ref
 * write reaches the server and is applied, its answer is lost (the connection is reset),
 * and meanwhile writer B commits on top. A must recognise its own manifest in the branch's
 * history and report the commit once, instead of rebasing and appending again.
 */
import { openStore, parseCid, type Store } from '@dreamdb/cas'
import { freshBucket, minioEndpoint, s3ClientFor, startFaultProxy } from '@dreamdb/cas-tests'
import { describe, expect, it } from 'vitest'
import { inspect, log, Repository } from '../src/index.js'
import { appendRecords, SCHEMA } from './helpers/records.js'

const endpoint = minioEndpoint()

type Meanwhile = 'append' | 'schema' | 'nothing'

async function scenario(options: { sdkRetries: boolean; meanwhile: Meanwhile }) {
  const bucket = await freshBucket(endpoint!)
  const direct = await openStore(`${endpoint}/${bucket}`)
  const b = new Repository(direct)
  await b.createDataset('corpus', { schema: SCHEMA })
  await appendRecords(b, 'corpus', 2, 'first')
  let drops = 0
  const proxy = await startFaultProxy({
    target: endpoint!,
    // Only the branch's ref write, and only once: the anchor counter and objects pass.
    dropResponseOf: (r) =>
      r.method === 'PUT' && r.path.split('?')[0]!.endsWith('/refs/corpus.ref') && drops++ === 0,
    beforeReset: async () => {
      if (options.meanwhile === 'append') await appendRecords(b, 'corpus', 3, 'B')
      if (options.meanwhile === 'schema') {
        await b.commit('corpus', {
          kind: 'schema',
          add: [{ name: 'split', family: 'scalar', kind: 'categorical' }],
        })
      }
    },
  })
  const client = await s3ClientFor(proxy.url, { maxAttempts: options.sdkRetries ? 3 : 1 })
  const lossy: Store = await openStore(`${proxy.url}/${bucket}`, { s3Client: client })
  const a = new Repository(lossy)
  try {
    const result = await appendRecords(a, 'corpus', 4, 'A')
    expect(proxy.dropped.map((d) => d.status)).toEqual([200])
    const history = await log(b, 'corpus')
    const state = await inspect(b, 'corpus')
    const tags: string[] = []
    for await (const { bytes } of direct.getMany(state.buckets.map((x) => parseCid(x.objects.label!.cid)))) {
      tags.push(JSON.parse(new TextDecoder().decode(bytes)).tag)
    }
    const anchors = state.buckets.flatMap((x) =>
      x.anchors.ranges!.flatMap(([s, n]) => Array.from({ length: n }, (_, i) => BigInt(s) + BigInt(i))),
    )
    return { result, history, state, tags, anchors }
  } finally {
    await lossy.close()
    client.destroy()
    await proxy.close()
    await direct.close()
  }
}

describe.runIf(endpoint !== undefined)('a commit whose ref write landed but whose answer was lost', () => {
  for (const sdkRetries of [true, false]) {
    const how = sdkRetries ? 'the SDK retries and gets 412' : 'no SDK retry: the reset reaches the store'
    it(`another writer appends meanwhile: A is committed once, its records appear once (${how})`, async () => {
      const { result, history, state, tags, anchors } = await scenario({ sdkRetries, meanwhile: 'append' })
      // A's manifest is in the history, directly below B's, and A was told about exactly it.
      expect(history.map((e) => e.change.kind)).toEqual(['append', 'append', 'append', 'create'])
      expect(history[1]!.manifest).toBe(result.manifest.toString())
      expect(tags).toEqual(['first', 'A', 'B'])
      expect(state.stats.records).toBe(9)
      expect(new Set(anchors.map(String)).size).toBe(anchors.length)
      expect(anchors.length).toBe(9)
    })
    it(`another writer changes the schema meanwhile: A is still committed, not a conflict (${how})`, async () => {
      const { result, history, tags } = await scenario({ sdkRetries, meanwhile: 'schema' })
      expect(history.map((e) => e.change.kind)).toEqual(['schema', 'append', 'append', 'create'])
      expect(history[1]!.manifest).toBe(result.manifest.toString())
      expect(tags).toEqual(['first', 'A'])
    })
  }
  it('nobody writes meanwhile: the lost answer is recognised and A lands once', async () => {
    const { result, history, tags } = await scenario({ sdkRetries: false, meanwhile: 'nothing' })
    expect(history[0]!.manifest).toBe(result.manifest.toString())
    expect(tags).toEqual(['first', 'A'])
  })
})
