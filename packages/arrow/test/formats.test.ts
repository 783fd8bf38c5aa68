/**
 * The stored bytes of layer segments and bucket objects, pinned by CID: objects already in
 * datasets must keep their CIDs (the CIDs below were written before segments were encoded in
 * one pass), so any change to the encoding fails here first.
 */
import { openStore } from '@dreamdb/cas'
import type { Field, FieldObject } from '@dreamdb/manifest'
import { Dictionary, Int32, Table, tableToIPC, Utf8, vectorFromArray } from 'apache-arrow'
import { describe, expect, it } from 'vitest'
import { encodeBucket, readBinaryRecord, readBucketColumns } from '../src/buckets.js'
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
const bucketOf = (records: number) => ({
  records,
  anchorMin: 1n,
  anchorMax: BigInt(records),
  anchorRanges: [{ start: 1n, count: records }],
  timeMin: 0,
  timeMax: 0,
})

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

  // A binary field: one fragment is the layout written before issue #13, byte for byte (the
  // CIDs below were computed with the code before it); several fragments (issue #13) keep
  // fragment 0 as the main object, add parts `fragment-<k>` and a `fragment` column in the index.
  const image: Field = { name: 'image', family: 'binary', media: 'image' }
  const images = [Buffer.from('a png'), new Uint8Array(0), Buffer.from('a jpeg!')]
  it('a binary field in one fragment keeps the CIDs it had', async () => {
    const store = await openStore('memory://')
    const cids: Record<string, string> = {}
    for (const [key, bytes] of encodeBucket([image], { image: images }, 3))
      cids[key] = (await store.put(bytes)).toString()
    expect(cids).toEqual({
      image: 'bafkreifmvl7mhplep25wfzarekxzcv2iqkbqpdmlhobjvzvnws7tajcvmy',
      'image/index': 'bafkreig2uyrs2lwn6jjw4qnucmmv6qppebtmyajp5cnjugjouk22ibi4dq',
    })
  })

  it('a binary field in several fragments is pinned too, and reads back', async () => {
    const store = await openStore('memory://')
    const fields: Record<string, FieldObject> = {}
    for (const [key, bytes] of encodeBucket([image], { image: images }, 3, new Map(), { fragmentBytes: 6 }))
      fields[key] = { cid: await store.put(bytes), bytes: bytes.byteLength }
    expect(Object.fromEntries(Object.entries(fields).map(([k, v]) => [k, v.cid.toString()]))).toEqual({
      image: 'bafkreidak7xq6oo6slobmalhjgolbr5auw6xhbulkhp3zxzthxgogyukqm',
      'image/index': 'bafkreidjbli7ne5h7biwhi6dauypkuozvx5nnn7qaqseio2insiq5frebe',
      'image/fragment-1': 'bafkreidirqmjdokktb5lcvgrps5vbp5qz5jvob6u2fjbzjreapk2kc3y2i',
    })
    const bucket = { ...bucketOf(3), fields }
    const column = (await readBucketColumns(store, [image], bucket)).image!
    expect(column.data.length).toBe(2) // one chunk per fragment
    expect(column.toArray().map((v: Uint8Array) => Buffer.from(v).toString())).toEqual([
      'a png',
      '',
      'a jpeg!',
    ])
    expect(Buffer.from(await readBinaryRecord(store, image, bucket, 2)).toString()).toBe('a jpeg!')
    // A fragment missing, or one that is not the size the index says, is refused.
    const { 'image/fragment-1': fragment, ...rest } = fields
    await expect(readBucketColumns(store, [image], { ...bucket, fields: rest })).rejects.toThrow(
      'its fragment 1 is missing',
    )
    const other = Buffer.from('a jpeg')
    const swapped = { ...fields, 'image/fragment-1': { cid: await store.put(other), bytes: 6 } }
    await expect(readBucketColumns(store, [image], { ...bucket, fields: swapped })).rejects.toMatchObject({
      code: 'ERR_ARROW_CORRUPT',
      reason: 'its records do not fill fragment 1 exactly',
    })
    expect(fragment).toBeDefined()
  })

  // Arrow numbers dictionary types per process (0, 1, ... in order of creation) and writes
  // the number into the stream. Until issue #13 a categorical object's bytes therefore
  // depended on how many types the process had made before it: in this file the segment got
  // 0 and the bucket object 1, pinned here as the old bucket object's CID. Now every stored
  // categorical object carries id 0, whatever came before.
  it('a categorical segment and bucket object get one CID whatever the process made before', async () => {
    const label: Field = { name: 'label', family: 'scalar', kind: 'categorical' }
    const store = await openStore('memory://')
    const cids: string[] = []
    for (let round = 0; round < 2; round++) {
      const segment = await writeLayerSegment(store, label, anchors, ['cat', null, 'dog'])
      const [[, bytes]] = encodeBucket([label], { label: ['cat', null, 'dog'] }, 3) as [[string, Uint8Array]]
      cids.push(segment.fields.label!.cid.toString(), (await store.put(bytes)).toString())
      new Dictionary(new Utf8(), new Int32()) // moves the process-wide counter on
    }
    const segment = 'bafkreifgfxn5cuzv543m6vgbjjkz2mvy2w66qzypaoqaygp2p3iav6o6e4'
    const bucket = 'bafkreihrb4hsqhyxz6hn6v2m6moynem5xlzni2fag3ue5xktts6wrqvlaq'
    expect(cids).toEqual([segment, bucket, segment, bucket])
  })

  it('a categorical bucket object written before issue #13 (dictionary id 1) reads the same', async () => {
    const old = tableToIPC(
      new Table({
        label: vectorFromArray(['cat', null, 'dog'], new Dictionary(new Utf8(), new Int32(), 1)),
      }),
      'stream',
    )
    const store = await openStore('memory://')
    const cid = await store.put(old)
    expect(cid.toString()).toBe('bafkreigeejzoele77zcyzt7ck4gnjdjvdtv2d7ncz3tnujbvotf7joa6py')
    const label: Field = { name: 'label', family: 'scalar', kind: 'categorical' }
    const bucket = { ...bucketOf(3), fields: { label: { cid, bytes: old.byteLength } } }
    const columns = await readBucketColumns(store, [label], bucket)
    expect(columns.label!.toArray()).toEqual(['cat', null, 'dog'])
  })
})
