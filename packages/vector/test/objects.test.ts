import { cidOf, DAG_CBOR_CODEC, openStore, RAW_CODEC } from '@dreamdb/cas'
import * as dagCbor from '@ipld/dag-cbor'
import { describe, expect, it } from 'vitest'
import {
  createCompressor,
  decodeCompressor,
  decodeSpatialIndex,
  encodeCompressor,
  encodeSpatialIndex,
  loadCompressor,
  loadSpatialIndex,
  saveCompressor,
  saveSpatialIndex,
  trainSpatialIndex,
} from '../src/index.js'
import { clustered } from './helpers/data.js'

async function trained() {
  const dim = 20
  return trainSpatialIndex(clustered({ n: 400, dim, seed: 2 }), { dim, metric: 'ip', lists: 8 })
}

describe('spatial index and compressor objects', () => {
  it('round-trip through a store by CID, deterministically', async () => {
    const store = await openStore('memory://')
    const spatialIndex = await trained()
    const compressor = createCompressor({ dim: 20, metric: 'ip', bits: 4, seed: 42 })
    const sCid = await saveSpatialIndex(store, spatialIndex)
    const cCid = await saveCompressor(store, compressor)
    expect(sCid.code).toBe(DAG_CBOR_CODEC)
    expect(sCid.equals(cidOf(encodeSpatialIndex(spatialIndex), DAG_CBOR_CODEC))).toBe(true)
    expect(cCid.equals(cidOf(encodeCompressor(compressor), DAG_CBOR_CODEC))).toBe(true)
    expect(await loadSpatialIndex(store, sCid)).toEqual(spatialIndex)
    expect(await loadCompressor(store, cCid)).toEqual(compressor)
    // the same options give the same compressor, so the same CID
    expect(
      (await saveCompressor(store, createCompressor({ dim: 20, metric: 'ip', bits: 4, seed: 42 }))).equals(
        cCid,
      ),
    ).toBe(true)
    expect(
      (await saveCompressor(store, createCompressor({ dim: 20, metric: 'ip', bits: 4, seed: 43 }))).equals(
        cCid,
      ),
    ).toBe(false)
    await store.close()
  })

  it('refuse a CID of the wrong kind with WrongObjectKindError', async () => {
    const store = await openStore('memory://')
    const sCid = await saveSpatialIndex(store, await trained())
    const cCid = await saveCompressor(store, createCompressor({ dim: 20, metric: 'ip' }))
    await expect(loadSpatialIndex(store, cCid)).rejects.toMatchObject({
      code: 'ERR_VECTOR_WRONG_KIND',
      actual: 'a vector compressor (dreamdb.vector.rabitq)',
    })
    await expect(loadCompressor(store, sCid)).rejects.toMatchObject({ code: 'ERR_VECTOR_WRONG_KIND' })
    const raw = await store.put(new TextEncoder().encode('not an index'))
    expect(raw.code).toBe(RAW_CODEC)
    await expect(loadSpatialIndex(store, raw)).rejects.toMatchObject({ code: 'ERR_VECTOR_WRONG_KIND' })
    const other = await store.put(dagCbor.encode({ schema: { fields: [] } }), { codec: DAG_CBOR_CODEC })
    await expect(loadCompressor(store, other)).rejects.toMatchObject({ code: 'ERR_VECTOR_WRONG_KIND' })
    await store.close()
  })

  it('let a missing object surface as ERR_CAS_NOT_FOUND', async () => {
    const store = await openStore('memory://')
    const absent = cidOf(encodeCompressor(createCompressor({ dim: 3, metric: 'l2' })), DAG_CBOR_CODEC)
    await expect(loadCompressor(store, absent)).rejects.toMatchObject({ code: 'ERR_CAS_NOT_FOUND' })
    await expect(loadSpatialIndex(store, absent)).rejects.toMatchObject({ code: 'ERR_CAS_NOT_FOUND' })
    await store.close()
  })

  it('decode strictly: corrupt, non-canonical and newer objects are refused', async () => {
    const compressor = createCompressor({ dim: 70, metric: 'cosine', bits: 2 })
    const good = dagCbor.decode(encodeCompressor(compressor)) as Record<string, unknown>
    const bad = (change: Record<string, unknown>) => dagCbor.encode({ ...good, ...change })
    expect(() => decodeCompressor(bad({ bits: 9 }))).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_CORRUPT' }),
    )
    expect(() => decodeCompressor(bad({ paddedDim: 70 }))).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_CORRUPT' }),
    )
    expect(() => decodeCompressor(bad({ extra: 1 }))).toThrow(/unknown key 'extra'/)
    expect(() => decodeCompressor(bad({ version: 2 }))).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_UNSUPPORTED_VERSION' }),
    )
    expect(() => decodeCompressor(new Uint8Array([0xff, 0x00]))).toThrow(
      expect.objectContaining({ code: 'ERR_VECTOR_CORRUPT' }),
    )
    // trailing bytes
    const trailing = new Uint8Array([...encodeCompressor(compressor), 0])
    expect(() => decodeCompressor(trailing)).toThrow(expect.objectContaining({ code: 'ERR_VECTOR_CORRUPT' }))

    const spatialIndex = await trained()
    const s = dagCbor.decode(encodeSpatialIndex(spatialIndex)) as Record<string, unknown>
    const badIndex = (change: Record<string, unknown>) => dagCbor.encode({ ...s, ...change })
    expect(() => decodeSpatialIndex(badIndex({ lists: 9 }))).toThrow(/centroids must be/)
    const nan = new Uint8Array(s.centroids as Uint8Array)
    new DataView(nan.buffer).setFloat32(0, Number.NaN, true)
    expect(() => decodeSpatialIndex(badIndex({ centroids: nan }))).toThrow(/not finite/)
    expect(decodeSpatialIndex(encodeSpatialIndex(spatialIndex))).toEqual(spatialIndex)
  })
})
