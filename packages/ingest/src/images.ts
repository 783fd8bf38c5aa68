/**
 * Images to model inputs: decode JPEG, PNG and PGM/PPM bytes (pure JavaScript, no native
 * code), resize, and normalize into a float32 tensor for an image model.
 */
import { decode as decodePng } from 'fast-png'
import jpeg from 'jpeg-js'

/** Decoded pixels: `channels` interleaved 8-bit samples per pixel (1 grey, 3 RGB, 4 RGBA). */
export interface Pixels {
  width: number
  height: number
  channels: number
  data: Uint8Array
}

/** The image format from its magic bytes, or undefined. */
export function imageFormat(bytes: Uint8Array): 'jpeg' | 'png' | 'pnm' | undefined {
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return 'jpeg'
  if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) return 'png'
  if (bytes[0] === 0x50 && (bytes[1] === 0x35 || bytes[1] === 0x36)) return 'pnm'
  return undefined
}

/** Decode JPEG, PNG or binary PGM/PPM (P5/P6). Throws an Error saying why it cannot. */
export function decodeImage(bytes: Uint8Array): Pixels {
  const format = imageFormat(bytes)
  if (format === 'jpeg') {
    const image = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false, maxMemoryUsageInMB: 1024 })
    const channels = image.data.length / (image.width * image.height)
    return { width: image.width, height: image.height, channels, data: image.data }
  }
  if (format === 'png') {
    const image = decodePng(bytes)
    let data: Uint8Array
    if (image.palette) {
      // Indexed colour: look each index up (8-bit indices only; smaller depths are rare here).
      const palette = image.palette
      data = new Uint8Array(image.width * image.height * 3)
      for (let i = 0; i < image.width * image.height; i++) {
        const rgb = palette[image.data[i]!] ?? [0, 0, 0]
        data.set(rgb.slice(0, 3), i * 3)
      }
      return { width: image.width, height: image.height, channels: 3, data }
    }
    if (image.depth === 16) {
      data = Uint8Array.from(image.data as Uint16Array, (v) => v >> 8)
    } else if (image.depth === 8) {
      data = image.data as Uint8Array
    } else {
      // 1, 2 or 4 bits per sample: fast-png returns them unpacked to one sample per byte.
      const max = 2 ** image.depth - 1
      data = Uint8Array.from(image.data as Uint8Array, (v) => Math.round((v * 255) / max))
    }
    return { width: image.width, height: image.height, channels: image.channels, data }
  }
  if (format === 'pnm') return decodePnm(bytes)
  throw new Error(
    `not a JPEG, PNG or PGM/PPM image (starts with ${Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ')})`,
  )
}

function decodePnm(bytes: Uint8Array): Pixels {
  const channels = bytes[1] === 0x36 ? 3 : 1
  // Header: magic, width, height, maxval, separated by whitespace (and # comments).
  const fields: number[] = []
  let at = 2
  while (fields.length < 3) {
    while (at < bytes.length && (bytes[at] === 0x20 || (bytes[at]! >= 9 && bytes[at]! <= 13))) at++
    if (bytes[at] === 0x23) {
      while (at < bytes.length && bytes[at] !== 0x0a) at++
      continue
    }
    let value = ''
    while (at < bytes.length && bytes[at]! >= 0x30 && bytes[at]! <= 0x39)
      value += String.fromCharCode(bytes[at++]!)
    if (value === '') throw new Error('a PGM/PPM header without width, height and maxval')
    fields.push(Number(value))
  }
  at++ // the one whitespace byte before the samples
  const [width, height, maxval] = fields as [number, number, number]
  if (maxval > 255) throw new Error('16-bit PGM/PPM is not supported')
  const size = width * height * channels
  if (bytes.length - at < size)
    throw new Error(`a truncated PGM/PPM (${bytes.length - at} of ${size} samples)`)
  const data = bytes.slice(at, at + size)
  if (maxval !== 255) for (let i = 0; i < data.length; i++) data[i] = Math.round((data[i]! * 255) / maxval)
  return { width, height, channels, data }
}

export interface Preprocess {
  /** Model input height and width. */
  height: number
  width: number
  /** `stretch` to the size, or scale the short side and crop the centre (CLIP, ResNet). */
  resize: 'stretch' | 'center-crop'
  /** Per channel (R, G, B) after scaling to [0, 1]: (x - mean) / std. */
  mean: [number, number, number]
  std: [number, number, number]
  /** Channels the model takes: 3 (RGB) or 1 (grey). */
  channels: 1 | 3
  /** Channels first (NCHW) or last (NHWC). */
  layout: 'nchw' | 'nhwc'
}

/**
 * Write one image into `out` at `offset` as the model expects it: RGB (or grey), resized
 * bilinearly, scaled to [0, 1] and normalized per channel.
 */
export function imageToTensor(pixels: Pixels, p: Preprocess, out: Float32Array, offset: number): void {
  const { width: sw, height: sh, channels: sc, data } = pixels
  // The source rectangle that maps onto the output.
  let x0 = 0
  let y0 = 0
  let cw = sw
  let ch = sh
  if (p.resize === 'center-crop') {
    const scale = Math.max(p.width / sw, p.height / sh)
    cw = p.width / scale
    ch = p.height / scale
    x0 = (sw - cw) / 2
    y0 = (sh - ch) / 2
  }
  const plane = p.width * p.height
  const sample = (x: number, y: number, c: number): number => {
    // RGB from grey repeats the grey; grey from RGB is the luma.
    const base = (y * sw + x) * sc
    if (sc >= 3) {
      if (p.channels === 1) return 0.299 * data[base]! + 0.587 * data[base + 1]! + 0.114 * data[base + 2]!
      return data[base + c]!
    }
    return data[base]!
  }
  for (let oy = 0; oy < p.height; oy++) {
    const sy = Math.min(Math.max(y0 + ((oy + 0.5) * ch) / p.height - 0.5, 0), sh - 1)
    const ya = Math.floor(sy)
    const yb = Math.min(ya + 1, sh - 1)
    const fy = sy - ya
    for (let ox = 0; ox < p.width; ox++) {
      const sx = Math.min(Math.max(x0 + ((ox + 0.5) * cw) / p.width - 0.5, 0), sw - 1)
      const xa = Math.floor(sx)
      const xb = Math.min(xa + 1, sw - 1)
      const fx = sx - xa
      for (let c = 0; c < p.channels; c++) {
        const top = sample(xa, ya, c) * (1 - fx) + sample(xb, ya, c) * fx
        const bottom = sample(xa, yb, c) * (1 - fx) + sample(xb, yb, c) * fx
        const value = ((top * (1 - fy) + bottom * fy) / 255 - p.mean[c]!) / p.std[c]!
        const index =
          p.layout === 'nchw'
            ? offset + c * plane + oy * p.width + ox
            : offset + (oy * p.width + ox) * p.channels + c
        out[index] = value
      }
    }
  }
}
