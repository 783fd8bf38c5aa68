/**
 * Rows come back from the decode thread as their Arrow buffers copied out of parquet-wasm's
 * memory into a shared buffer (decode-worker.js, `sendRowsFfi`), rebuilt here by
 * `tableOfLayout`; without a shared buffer, as an IPC stream. Both must give the same
 * values, for every type a kept column can have, nulls and rows cut mid-row-group included.
 */

import { createHash } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  Binary,
  Bool,
  Dictionary,
  Field,
  FixedSizeList,
  Float32,
  Float64,
  Int8,
  Int32,
  Int64,
  LargeUtf8,
  List,
  type Table,
  TimestampMillisecond,
  Uint16,
  Utf8,
  vectorFromArray,
} from 'apache-arrow'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { decodeOnThread, TransferBuffers } from '../src/decode-threads.js'
import { imageColumn, writeHfShard } from '../src/testing.js'

let dir: string
let path: string
const ROWS = 37

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dreamdb-decode-'))
  path = join(dir, 'train-00000-of-00001.parquet')
  const rows = Array.from({ length: ROWS }, (_, r) => r)
  const maybe = <T>(r: number, value: T) => (r % 4 === 3 ? null : value)
  await writeHfShard(
    path,
    {
      image: imageColumn(
        rows.map((r) => Uint8Array.from({ length: 10 + (r % 7) * 13 }, (_, i) => (i * 31 + r) & 255)),
        rows.map((r) => `train/${r}.png`),
      ),
      label: vectorFromArray(
        rows.map((r) => BigInt(r % 5)),
        new Int64(),
      ),
      embedding: vectorFromArray(
        rows.map((r) => Float32Array.from({ length: 3 }, (_, d) => r + d / 4)),
        new List(new Field('item', new Float32(), true)),
      ),
      fixed: vectorFromArray(
        rows.map((r) => [r, -r]),
        new FixedSizeList(2, new Field('item', new Float64(), true)),
      ),
      caption: vectorFromArray(
        rows.map((r) => maybe(r, `caption ${r} ${'x'.repeat(r % 3)}`)),
        new Utf8(),
      ),
      large: vectorFromArray(
        rows.map((r) => maybe(r, `large ${r}`)),
        new LargeUtf8(),
      ),
      kind: vectorFromArray(
        rows.map((r) => maybe(r, ['cat', 'dog', 'bird'][r % 3]!)),
        new Dictionary(new Utf8(), new Int32()),
      ),
      flag: vectorFromArray(
        rows.map((r) => maybe(r, r % 2 === 0)),
        new Bool(),
      ),
      small: vectorFromArray(
        rows.map((r) => maybe(r, (r % 200) - 100)),
        new Int8(),
      ),
      count: vectorFromArray(
        rows.map((r) => r * 1000),
        new Uint16(),
      ),
      when: vectorFromArray(
        rows.map((r) => maybe(r, 1_700_000_000_000 + r * 1000)),
        new TimestampMillisecond(),
      ),
      width: vectorFromArray(
        rows.map((r) => maybe(r, r * 3)),
        new Int32(),
      ),
      blob: vectorFromArray(
        rows.map((r) => Uint8Array.from({ length: (r * 7) % 23 }, (_, i) => (i * 17 + r) & 255)),
        new Binary(),
      ),
    },
    { labelNames: ['a', 'b', 'c', 'd', 'e'], rowGroup: 8 },
  )
})

afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

/** Every value of every column, as plain JS (typed arrays and vectors spread). */
function plain(table: Table): unknown[][] {
  const value = (v: unknown): unknown => {
    if (v === null || typeof v !== 'object') return v
    if (ArrayBuffer.isView(v)) return Array.from(v as unknown as ArrayLike<number>)
    if (typeof (v as { toArray?: unknown }).toArray === 'function')
      return Array.from((v as { toArray(): ArrayLike<unknown> }).toArray(), value)
    if (typeof (v as { toJSON?: unknown }).toJSON === 'function')
      return value((v as { toJSON(): unknown }).toJSON())
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, value(x)]))
  }
  return table.schema.fields.map((f) => Array.from(table.getChild(f.name)!, value))
}

it('rows decoded into a shared buffer equal the IPC stream, for every column type, nulls and cut row groups', async () => {
  const buffers = new TransferBuffers(2)
  const columns = [
    'image',
    'label',
    'embedding',
    'fixed',
    'caption',
    'large',
    'kind',
    'flag',
    'small',
    'count',
    'when',
    'width',
    'blob',
  ]
  // Whole, and cut mid-row-group at both ends (row groups of 8).
  for (const [start, end] of [
    [0, ROWS],
    [3, 21],
    [17, 18],
  ] as const) {
    const groups: number[] = []
    for (let g = 0; g * 8 < ROWS; g++) if (g * 8 < end && g * 8 + 8 > start) groups.push(g)
    const request = {
      path,
      rowGroups: groups,
      offset: start - groups[0]! * 8,
      limit: end - start,
      columns,
      whole: true,
    }
    const viaIpc = await decodeOnThread(request)
    const viaShared = await decodeOnThread({ ...request, into: buffers.take() })
    // The shared path really ran (a table over a SharedArrayBuffer, not an IPC stream).
    expect(viaShared.bytes.buffer).toBeInstanceOf(SharedArrayBuffer)
    expect(viaIpc.bytes.buffer).not.toBeInstanceOf(SharedArrayBuffer)
    expect(viaShared.table.numRows).toBe(end - start)
    expect(viaShared.table.schema.fields.map((f) => String(f.type))).toEqual(
      viaIpc.table.schema.fields.map((f) => String(f.type)),
    )
    expect(plain(viaShared.table)).toEqual(plain(viaIpc.table))
    buffers.lend(viaShared.table, viaShared.bytes)
    buffers.giveBack(viaShared.table)
  }
})

it('the decode thread hashes a binary column as it hands the rows over: each row its sha2-256 and length', async () => {
  const buffers = new TransferBuffers(2)
  const sha = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest()
  for (const [start, end] of [
    [0, ROWS],
    [3, 21],
    [17, 18],
  ] as const) {
    const groups: number[] = []
    for (let g = 0; g * 8 < ROWS; g++) if (g * 8 < end && g * 8 + 8 > start) groups.push(g)
    const request = {
      path,
      rowGroups: groups,
      offset: start - groups[0]! * 8,
      limit: end - start,
      columns: ['image', 'label', 'blob'],
      whole: true,
    }
    for (const [hash, values] of [
      [['image', 'bytes'], (t: Table) => t.getChild('image')!.getChild('bytes')!],
      [['blob'], (t: Table) => t.getChild('blob')!],
    ] as const) {
      const { table, bytes, digests } = await decodeOnThread({
        ...request,
        hash: [...hash],
        into: buffers.take(),
      })
      const column = values(table)
      expect(digests, hash.join('.')).toBeDefined()
      expect(digests!.lengths.length).toBe(end - start)
      for (let i = 0; i < column.length; i++) {
        const value = column.get(i) as Uint8Array
        expect(digests!.lengths[i], `${hash.join('.')} row ${start + i}`).toBe(value.byteLength)
        expect(Buffer.from(digests!.sha256.subarray(i * 32, i * 32 + 32)).equals(sha(value))).toBe(true)
      }
      buffers.lend(table, bytes)
      buffers.giveBack(table)
    }
    // A column that is not there, or not binary: no digests (the append hashes the values).
    for (const hash of [['image', 'nope'], ['label'], ['image']]) {
      const { table, bytes, digests } = await decodeOnThread({ ...request, hash, into: buffers.take() })
      expect(digests, hash.join('.')).toBeUndefined()
      buffers.lend(table, bytes)
      buffers.giveBack(table)
    }
  }
})
