/**
 * Embeddings computed in process by an ONNX image model through onnxruntime-node (an
 * optional dependency, loaded only when a model is given). The model's first input is an
 * image batch (NCHW or NHWC float32); its output, or any tensor of its graph named with
 * `output` (the penultimate layer of a classifier is the usual image embedding), is
 * pooled to one vector per image.
 */
import { readFile } from 'node:fs/promises'
import { resolve } from 'node:path'
import type { InferenceSession, Tensor } from 'onnxruntime-node'
import { ImageError, IngestFileNotFoundError, InvalidIngestOptionError, ModelError } from './errors.js'
import type { Preprocess } from './images.js'

export interface ModelOptions {
  path: string
  /** A graph output, or an intermediate tensor to expose as one. @default the first output */
  output?: string
  /** `[height, width]` for a model whose input size is not fixed. @default [224, 224] */
  inputSize?: [number, number]
  resize?: Preprocess['resize']
  mean?: [number, number, number]
  std?: [number, number, number]
  /** Images per model run. @default 32 */
  batch?: number
}

export interface Embedder {
  /** The model file. */
  path: string
  output: string
  dim: number
  preprocess: Preprocess
  /** One vector per image; `where(i)` names image i in an error. */
  embed(images: readonly Uint8Array[], where: (i: number) => string): Promise<Float32Array[]>
  close(): Promise<void>
}

/** ImageNet's statistics: the default of torchvision and most image models. */
export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406]
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225]

type Ort = typeof import('onnxruntime-node')

async function loadRuntime(): Promise<Ort> {
  try {
    const ort = (await import('onnxruntime-node')) as Ort & { default?: Ort }
    return ort.default ?? ort
  } catch (error) {
    throw new ModelError(
      `onnxruntime-node cannot be loaded (${(error as Error).message.split('\n')[0]})`,
      'it is an optional dependency of @dreamdb/cli: npm install onnxruntime-node',
    )
  }
}

/** Add `name` (an intermediate tensor) to the graph's outputs, so that the session returns it. */
async function exposeOutput(bytes: Uint8Array, name: string, path: string): Promise<Uint8Array> {
  const { default: proto } = await import('onnx-proto')
  let model: ReturnType<typeof proto.onnx.ModelProto.decode>
  try {
    model = proto.onnx.ModelProto.decode(bytes)
  } catch (error) {
    throw new ModelError(`${path} is not an ONNX model (${(error as Error).message})`)
  }
  const graph = model.graph
  if (!graph) throw new ModelError(`${path} has no graph`)
  graph.output ??= []
  if (graph.output.some((o) => o.name === name)) return bytes
  const tensors = new Set((graph.node ?? []).flatMap((n) => n.output ?? []))
  if (!tensors.has(name)) {
    const outputs = graph.output.map((o) => o.name)
    throw new ModelError(
      `${path} has no tensor named '${name}'`,
      `its outputs are ${outputs.join(', ')}; the model's output option (--model-output) takes an output or any tensor a node produces`,
    )
  }
  graph.output.push(proto.onnx.ValueInfoProto.create({ name, type: { tensorType: { elemType: 1 } } }))
  return proto.onnx.ModelProto.encode(model).finish()
}

/** Load the model, work out its input layout and size, and the dimension of its vectors. */
export async function loadModel(options: ModelOptions, cwd: string): Promise<Embedder> {
  const path = resolve(cwd, options.path)
  let bytes: Uint8Array
  try {
    bytes = await readFile(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new IngestFileNotFoundError(path, 'Model')
    throw new ModelError(`${path} cannot be read (${(error as Error).message})`)
  }
  const ort = await loadRuntime()
  // The image decoders (fast-png, jpeg-js: ~115 kB of JavaScript) only for a model: an ingest
  // of an embedding column never decodes an image, and every process paid their load (issue #13).
  const { decodeImage, imageToTensor } = await import('./images.js')
  if (options.output !== undefined) bytes = await exposeOutput(bytes, options.output, path)
  let session: InferenceSession
  try {
    session = await ort.InferenceSession.create(bytes)
  } catch (error) {
    throw new ModelError(
      `${path} is not an ONNX model that onnxruntime can load (${(error as Error).message.split('\n')[0]})`,
      'the model is an .onnx file of an image model (input: a float32 image batch)',
    )
  }
  const input = session.inputMetadata[0]
  if (input === undefined || !input.isTensor || input.type !== 'float32' || input.shape.length !== 4) {
    await session.release()
    throw new ModelError(
      `${path} does not take an image batch: its first input is ${input?.isTensor ? `${input.type} of shape [${input.shape.join(', ')}]` : 'not a tensor'}`,
      'the model must take float32 images as [N, C, H, W] or [N, H, W, C]',
    )
  }
  const shape = input.shape
  const fixed = (d: number | string | undefined) => (typeof d === 'number' && d > 0 ? d : undefined)
  const layout: Preprocess['layout'] =
    fixed(shape[1]) === 1 || fixed(shape[1]) === 3
      ? 'nchw'
      : fixed(shape[3]) === 1 || fixed(shape[3]) === 3
        ? 'nhwc'
        : 'nchw'
  const channels = ((layout === 'nchw' ? fixed(shape[1]) : fixed(shape[3])) ?? 3) as 1 | 3
  const [hAt, wAt] = layout === 'nchw' ? [2, 3] : [1, 2]
  const size: [number | undefined, number | undefined] = [fixed(shape[hAt]), fixed(shape[wAt])]
  if (options.inputSize && size[0] !== undefined && size[1] !== undefined) {
    if (options.inputSize[0] !== size[0] || options.inputSize[1] !== size[1]) {
      await session.release()
      throw new InvalidIngestOptionError(
        `inputSize ${options.inputSize.join('x')} (--model-input-size) contradicts the model, which takes ${size[0]}x${size[1]}`,
        'leave inputSize (--model-input-size) out for a model with a fixed input size',
      )
    }
  }
  const preprocess: Preprocess = {
    height: size[0] ?? options.inputSize?.[0] ?? 224,
    width: size[1] ?? options.inputSize?.[1] ?? 224,
    resize: options.resize ?? 'center-crop',
    mean: options.mean ?? IMAGENET_MEAN,
    std: options.std ?? IMAGENET_STD,
    channels,
    layout,
  }
  const output = options.output ?? session.outputNames[0]!
  const batch = options.batch ?? 32
  const perImage = preprocess.channels * preprocess.height * preprocess.width
  const inputName = session.inputNames[0]!
  const dims =
    layout === 'nchw'
      ? (n: number) => [n, channels, preprocess.height, preprocess.width]
      : (n: number) => [n, preprocess.height, preprocess.width, channels]

  const run = async (tensor: Float32Array, n: number): Promise<Float32Array[]> => {
    let result: Record<string, Tensor>
    try {
      result = (await session.run({ [inputName]: new ort.Tensor('float32', tensor, dims(n)) }, [
        output,
      ])) as Record<string, Tensor>
    } catch (error) {
      throw new ModelError(`${path} failed to run (${(error as Error).message.split('\n')[0]})`)
    }
    return pool(result[output]!, n, path, output)
  }

  // One run on a blank image gives the vectors' dimension before anything is ingested.
  const probe = await run(new Float32Array(perImage), 1)
  const dim = probe[0]!.length
  if (dim < 1) throw new ModelError(`${path}: output '${output}' is empty`)

  return {
    path,
    output,
    dim,
    preprocess,
    async embed(images, where) {
      const vectors: Float32Array[] = []
      for (let start = 0; start < images.length; start += batch) {
        const n = Math.min(batch, images.length - start)
        const tensor = new Float32Array(n * perImage)
        for (let i = 0; i < n; i++) {
          let pixels: ReturnType<typeof decodeImage>
          try {
            pixels = decodeImage(images[start + i]!)
          } catch (error) {
            throw new ImageError(
              `${where(start + i)}: the image cannot be decoded (${(error as Error).message})`,
              'embedding with a model decodes JPEG, PNG and PGM/PPM images',
            )
          }
          imageToTensor(pixels, preprocess, tensor, i * perImage)
        }
        vectors.push(...(await run(tensor, n)))
      }
      return vectors
    },
    close: () => session.release(),
  }
}

/**
 * One vector per image from an output tensor: `[N, D]` as it is, `[N, T, D]` averaged over
 * T (tokens), `[N, C, H, W]` averaged over H and W (a feature map, channels first).
 */
function pool(tensor: Tensor, n: number, path: string, output: string): Float32Array[] {
  const dims = tensor.dims
  if (tensor.type !== 'float32' || dims[0] !== n || dims.length < 2 || dims.length > 4) {
    throw new ModelError(
      `${path}: output '${output}' is ${tensor.type} of shape [${dims.join(', ')}], not one float32 vector per image`,
      'name the tensor that holds the embeddings with the output option (--model-output)',
    )
  }
  const data = tensor.data as Float32Array
  const per = data.length / n
  const vectors: Float32Array[] = []
  for (let i = 0; i < n; i++) {
    const item = data.subarray(i * per, (i + 1) * per)
    if (dims.length === 2) {
      vectors.push(Float32Array.from(item))
      continue
    }
    // [T, D]: mean over rows; [C, H, W]: mean over each channel's plane.
    const [groups, size] = dims.length === 3 ? [dims[2]!, dims[1]!] : [dims[1]!, dims[2]! * dims[3]!]
    const vector = new Float32Array(groups)
    for (let g = 0; g < groups; g++) {
      let sum = 0
      for (let k = 0; k < size; k++) sum += dims.length === 3 ? item[k * groups + g]! : item[g * size + k]!
      vector[g] = sum / size
    }
    vectors.push(vector)
  }
  return vectors
}
