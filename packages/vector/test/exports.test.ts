import { expect, it } from 'vitest'

it('exports a small, stable public surface', async () => {
  const api = await import('../src/index.js')
  expect(Object.keys(api).sort()).toMatchInlineSnapshot(`
    [
      "CorruptObjectError",
      "DimensionMismatchError",
      "IncompatibleError",
      "InvalidOptionError",
      "NonFiniteValueError",
      "NotEnoughVectorsError",
      "RerankUnavailableError",
      "UnsupportedVersionError",
      "VectorError",
      "WasmUnavailableError",
      "WrongObjectKindError",
      "ZeroVectorError",
      "createCompressor",
      "createExactScan",
      "createVectorIndex",
      "decodeCodes",
      "decodeCompressor",
      "decodeSpatialIndex",
      "encodeCodes",
      "encodeCompressor",
      "encodeSpatialIndex",
      "listSizesOfCodes",
      "loadCompressor",
      "loadSpatialIndex",
      "saveCompressor",
      "saveSpatialIndex",
      "trainSpatialIndex",
      "wasmAvailable",
    ]
  `)
})
