/**
 * Parquet shards in the Hugging Face layout, written in the test from real images: MNIST
 * digits (the `mnist` package, MIT) encoded as PNG, an `image` struct {bytes, path}, a
 * ClassLabel `label` (an int index, its names in the `huggingface` schema metadata, as
 * `datasets` writes them) and an embedding column (the digit average-pooled to 7x7, 49-d).
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int32,
  Int64,
  List,
  Utf8,
  type Vector,
  vectorFromArray,
} from 'apache-arrow'
import { encode as encodePng } from 'fast-png'
import { imageColumn, shardFileName, writeHfShard } from '../src/testing.js'

const require = createRequire(import.meta.url)
const digits = Array.from(
  { length: 10 },
  (_, d) => (require(`mnist/src/digits/${d}.json`) as { data: number[] }).data,
)

/** A temporary folder, removed by `remove`. */
export async function tempDir(): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'dreamdb-ingest-'))
  return { path, remove: () => rm(path, { recursive: true, force: true }) }
}

/** The ClassLabel names: `label` holds the index, the names say what it means. */
export const NAMES = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine']

/** Record `i` of the fixtures: the (i/10)th image of digit i % 10. */
export function digit(i: number) {
  const d = i % 10
  const k = Math.floor(i / 10)
  const pixels = digits[d]!.slice(k * 784, (k + 1) * 784)
  const grey = Uint8Array.from(pixels, (p) => Math.round(p * 255))
  const png = encodePng({ width: 28, height: 28, data: grey, channels: 1, depth: 8 })
  const embedding = new Array<number>(49).fill(0)
  pixels.forEach((p, at) => {
    embedding[Math.floor(Math.floor(at / 28) / 4) * 7 + Math.floor((at % 28) / 4)]! += p / 16
  })
  // A constant component keeps blank corners of a digit from making a zero vector.
  embedding[0]! += 0.01
  return { png, grey, embedding, label: d, name: NAMES[d]! }
}

export interface ShardSpec {
  split: string
  /** Number of shards, and rows in each. */
  shards: number
  rows: number
  /** The first record index (so that splits hold different digits). */
  first: number
  rowGroup?: number
  /** Under `root/data` (the Hub's layout) or `root`. @default data */
  folder?: 'data' | 'root'
  /**
   * How the embedding column is typed. @default list. `ragged`, `nan`, `null`: the last row's
   * vector is short, has a NaN, or is null; `huge`: float64, the last row's first component
   * beyond float32's range.
   */
  embedding?: 'list' | 'fixed' | 'float64' | 'none' | 'strings' | 'ragged' | 'nan' | 'null' | 'huge'
  /** `label` as a ClassLabel index (default) or as strings. */
  label?: 'classlabel' | 'string'
  /** Leave a column out. */
  drop?: 'image' | 'label'
  /** Replace this row's image bytes (in every shard) with bytes that are no image. */
  corrupt?: number
  /**
   * Columns beyond image, label and embedding, as Hub datasets have them: `id` (string,
   * first), `caption` (string, null every fifth row), `width` (int32), `score` (float64),
   * `tags` (a list of strings, which no scalar field can hold) and `__index_level_0__`
   * (pandas' index, whose name cannot be a field's).
   */
  extra?: boolean
}

export interface FixtureRecord {
  split: string
  shard: string
  row: number
  image: Uint8Array
  /** The image's `path` in its struct. */
  path: string
  /** The digit's 28x28 grey pixels, as encoded in `image`. */
  grey: Uint8Array
  label: string
  embedding: number[]
}

/** Write the shards of one split; returns every record they hold, in file order. */
export async function writeSplit(root: string, spec: ShardSpec): Promise<FixtureRecord[]> {
  const dir = spec.folder === 'root' ? root : join(root, 'data')
  const records: FixtureRecord[] = []
  for (let s = 0; s < spec.shards; s++) {
    const name = shardFileName(spec.split, s, spec.shards)
    const rows = Array.from({ length: spec.rows }, (_, r) => digit(spec.first + s * spec.rows + r))
    const columns: Record<string, Vector> = {}
    if (spec.extra) {
      columns.id = vectorFromArray(
        rows.map((_, r) => `${spec.split}-${s}-${r}`),
        new Utf8(),
      )
    }
    if (spec.drop !== 'image') {
      columns.image = imageColumn(
        rows.map((r, i) => (i === spec.corrupt ? new TextEncoder().encode('not an image') : r.png)),
        rows.map((_, r) => `${spec.split}/${s}/${r}.png`),
      )
    }
    if (spec.drop !== 'label') {
      columns.label =
        spec.label === 'string'
          ? vectorFromArray(
              rows.map((r) => r.name),
              new Utf8(),
            )
          : vectorFromArray(
              rows.map((r) => BigInt(r.label)),
              new Int64(),
            )
    }
    const kind = spec.embedding ?? 'list'
    const last = (i: number, r: { embedding: number[] }): number[] | null => {
      if (i !== rows.length - 1) return r.embedding
      if (kind === 'ragged') return r.embedding.slice(0, 48)
      if (kind === 'nan') return r.embedding.map((v, d) => (d === 3 ? Number.NaN : v))
      if (kind === 'huge') return r.embedding.map((v, d) => (d === 0 ? 1e300 : v))
      return kind === 'null' ? null : r.embedding
    }
    if (kind === 'list' || kind === 'ragged' || kind === 'nan' || kind === 'null') {
      columns.embedding = vectorFromArray(
        rows.map((r, i) => last(i, r)),
        new List(new Field('item', new Float32(), true)),
      )
    } else if (kind === 'float64' || kind === 'huge') {
      columns.embedding = vectorFromArray(
        rows.map((r, i) => last(i, r)),
        new List(new Field('item', new Float64(), true)),
      )
    } else if (kind === 'fixed') {
      columns.embedding = vectorFromArray(
        rows.map((r) => r.embedding),
        new FixedSizeList(49, new Field('item', new Float32(), true)),
      )
    } else if (kind === 'strings') {
      columns.embedding = vectorFromArray(
        rows.map((r) => JSON.stringify(r.embedding)),
        new Utf8(),
      )
    }
    if (spec.extra) {
      columns.caption = vectorFromArray(
        rows.map((r, i) => (i % 5 === 4 ? null : `a handwritten ${r.name}`)),
        new Utf8(),
      )
      columns.width = vectorFromArray(
        rows.map(() => 28),
        new Int32(),
      )
      columns.score = vectorFromArray(
        rows.map((_, r) => r / 4),
        new Float64(),
      )
      columns.tags = vectorFromArray(
        rows.map(() => ['digit']),
        new List(new Field('item', new Utf8(), true)),
      )
      // What pandas leaves in many Hub shards: a column no field can be named after.
      columns.__index_level_0__ = vectorFromArray(
        rows.map((_, r) => BigInt(r)),
        new Int64(),
      )
    }
    await writeHfShard(join(dir, name), columns, {
      labelNames: spec.label === 'string' ? null : NAMES,
      rowGroup: spec.rowGroup ?? 16,
    })
    rows.forEach((r, row) => {
      records.push({
        split: spec.split,
        shard: spec.folder === 'root' ? name : `data/${name}`,
        row,
        image: r.png,
        path: `${spec.split}/${s}/${row}.png`,
        grey: r.grey,
        label: spec.label === 'string' ? r.name : NAMES[r.label]!,
        embedding: r.embedding,
      })
    })
  }
  return records
}
