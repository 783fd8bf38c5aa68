/**
 * The stored bytes of layer segments and bucket objects, pinned by CID: objects already in
 * datasets must keep their CIDs (the CIDs below were written before segments were encoded in
 * one pass), so any change to the encoding fails here first.
 */
import { openStore } from '@dreamdb/cas'
import type { Field } from '@dreamdb/manifest'
import { describe, expect, it } from 'vitest'
import { encodeBucket } from '../src/buckets.js'
import { writeLayerSegment } from '../src/segments.js'

const embedding: Field = {
  name: 'embedding',
  family: 'embedding',
  dim: 3,
  metric: 'cosine',
  algorithm: null,
  spatialIndex: null,
  compressor: null,
  rerank: false,
}
const cases: [Field, unknown[]][] = [
  [{ name: 'caption', family: 'scalar', kind: 'string' }, ['a', null, 'ccc']],
  [{ name: 'count', family: 'scalar', kind: 'int' }, [1, 2n ** 40n, null]],
  [{ name: 'score', family: 'scalar', kind: 'float' }, [0.5, -1, null]],
  [{ name: 'ok', family: 'scalar', kind: 'bool' }, [true, false, null]],
  [
    { name: 'at', family: 'scalar', kind: 'timestamp' },
    [new Date(1_790_000_000_000), 1_790_000_000_001, null],
  ],
  [embedding, [[1, 0, 0], new Float32Array([0, 1, 0]), [0.5, 0.5, 0.25]]],
]
const anchors = [5n, 2n ** 40n, 7n]

describe('stored bytes', () => {
  it('layer segments keep the CIDs they had', async () => {
    const store = await openStore('memory://')
    const cids: Record<string, string> = {}
    for (const [field, values] of cases) {
      const segment = await writeLayerSegment(store, field, anchors, values)
      cids[field.name] = segment.fields[field.name]!.cid.toString()
    }
    expect(cids).toEqual({
      caption: 'bafkreid2npdiflb72ya5xwb2ahzjs7o6gpoanobd2gcqijpixarzbgdfai',
      count: 'bafkreiarbbewhgma6ntjxuinbmzyethhekel77xccya553hsigis4euq7m',
      score: 'bafkreigkwoqx4wxxi3xpl5n2kbulbmr7n2u2gz6nuq2x4nmsqg5uz5gp6q',
      ok: 'bafkreifp2gf4ogxfe3ggjp4dnfajicvfspracmlnfl5r7l4i5ksunh3bj4',
      at: 'bafkreidwmmm57ueva6jqftc6uy5acnnhzqlzeecsbhuxhaeqmm5igesedi',
      embedding: 'bafkreifi5s73nomlpbjiz3c23bmhtnghbhmcj7afc7bt3vmmcvshv6awny',
    })
  })

  it('bucket objects keep the CIDs they had', async () => {
    const fields = cases.map(([field]) => field)
    const columns = Object.fromEntries(cases.map(([field, values]) => [field.name, values]))
    const store = await openStore('memory://')
    const cids: Record<string, string> = {}
    for (const [key, bytes] of encodeBucket(fields, columns, 3))
      cids[key] = (await store.put(bytes)).toString()
    expect(cids).toEqual({
      caption: 'bafkreife7qwadvmabdv2xvoi7lwiefncpxdg4dt6iyxpnerz26k57paese',
      count: 'bafkreid5ucoiuyy7rnwiakpzici6acgqytgxjm4ybm44awr6jgtf7rwkgu',
      score: 'bafkreiezoguyrl56ie5egbnnpwdlyulomv4ciqflvptkuixw36eqz7qvta',
      ok: 'bafkreigaswxrsh6e26mxgyjtprru47efb43e3zreb7twac6hlltstmkhca',
      at: 'bafkreiffm23phkwc5rary7a2iaiqss2utegwxctcyj75wtbyswzmcfuxna',
      embedding: 'bafkreiavpygftmtb7sd3t3kqk2mzwnhrc5spyxiu6hzogguq4ryk4d74um',
    })
  })

  // Arrow numbers dictionary types per process (0, 1, ... in order of creation) and writes
  // the number into the stream, so a categorical object's bytes depend on how many were
  // made before it. This file makes no other: the segment gets 0 and the bucket object 1.
  it('a categorical segment and bucket object keep the CIDs they had', async () => {
    const label: Field = { name: 'label', family: 'scalar', kind: 'categorical' }
    const store = await openStore('memory://')
    const segment = await writeLayerSegment(store, label, anchors, ['cat', null, 'dog'])
    const [[, bytes]] = encodeBucket([label], { label: ['cat', null, 'dog'] }, 3) as [[string, Uint8Array]]
    expect([segment.fields.label!.cid.toString(), (await store.put(bytes)).toString()]).toEqual([
      'bafkreifgfxn5cuzv543m6vgbjjkz2mvy2w66qzypaoqaygp2p3iav6o6e4',
      'bafkreigeejzoele77zcyzt7ck4gnjdjvdtv2d7ncz3tnujbvotf7joa6py',
    ])
  })
})
