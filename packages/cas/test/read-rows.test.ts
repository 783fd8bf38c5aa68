import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { rejection } from '@dreamdb/cas-tests'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { BufferPool, permuteRows, type ReadBuffers, type RowGroup, type Store } from '../src/index.js'
import { openStore } from '../src/open.js'

/** An object shaped as an Arrow IPC stream of vectors is: a head, `rows` rows, then 8 bytes. */
function shaped(rows: number, rowBytes: number, head: number): Uint8Array {
  const bytes = randomBytes(head + rows * rowBytes + 8)
  return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** A shuffled window over parts of `counts` rows: position p of the window's parts one after another. */
function windowOf(counts: number[], seed: number): Omit<RowGroup, 'rowBytes' | 'trailer'> {
  const n = counts.reduce((a, b) => a + b, 0)
  const bucketOf = new Uint32Array(n)
  const rowOf = new Uint32Array(n)
  let at = 0
  counts.forEach((count, b) => {
    for (let r = 0; r < count; r++, at++) {
      bucketOf[at] = b
      rowOf[at] = r
    }
  })
  const order = Uint32Array.from({ length: n }, (_, i) => i)
  let state = seed
  for (let i = n - 1; i > 0; i--) {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    const j = state % (i + 1)
    ;[order[i], order[j]] = [order[j]!, order[i]!]
  }
  return { counts, bucketOf, rowOf, order }
}

/** The parts as they must read once moved: position p holds the row position order[p] held. */
function expected(objects: Uint8Array[], group: RowGroup): Buffer[] {
  const out = objects.map((o) => Buffer.from(o))
  const rowAt = (bytes: Uint8Array, part: number, row: number) => {
    const start =
      bytes.byteLength - group.trailer - group.counts[part]! * group.rowBytes + row * group.rowBytes
    return bytes.subarray(start, start + group.rowBytes)
  }
  for (let p = 0; p < group.order.length; p++) {
    const q = group.order[p]!
    rowAt(out[group.bucketOf[p]!]!, group.bucketOf[p]!, group.rowOf[p]!).set(
      rowAt(objects[group.bucketOf[q]!]!, group.bucketOf[q]!, group.rowOf[q]!),
    )
  }
  return out
}

describe('rows moved on the read thread (GetOptions.rows)', () => {
  let root: string
  let store: Store
  beforeEach(async () => {
    root = await mkdtemp(join(tmpdir(), 'dreamdb-rows-'))
    store = await openStore(root, { readThreads: true })
  })
  afterEach(async () => {
    await store.close()
    await rm(root, { recursive: true, force: true })
  })

  /** Gets every part with the group; how many parts reported `moved`. */
  async function readGroup(
    objects: Uint8Array[],
    group: RowGroup,
    buffers?: ReadBuffers,
  ): Promise<{ read: Uint8Array[]; moved: number }> {
    const cids = await Promise.all(objects.map((o) => store.put(o)))
    let moved = 0
    const read = await Promise.all(
      cids.map((cid, part) =>
        store.get(cid, {
          rows: {
            group,
            part,
            moved: () => {
              moved++
            },
          },
          ...(buffers ? { buffers } : {}),
        }),
      ),
    )
    return { read, moved }
  }

  it('moves rows across the parts of a group after hashing, in fresh and in spare buffers', async () => {
    for (const pooled of [false, true]) {
      // Two parts of different sizes and heads, 512-byte rows (128-d float32), over 1 MiB each.
      const counts = [2600, 2100]
      const objects = [shaped(counts[0]!, 512, 200), shaped(counts[1]!, 512, 328)]
      const group: RowGroup = { ...windowOf(counts, pooled ? 7 : 3), rowBytes: 512, trailer: 8 }
      const pool = new BufferPool()
      const buffers: ReadBuffers | undefined = pooled
        ? { take: (size) => pool.take(size) ?? new SharedArrayBuffer(size!), give: () => {}, hold: () => {} }
        : undefined
      const { read, moved } = await readGroup(objects, group, buffers)
      expect(moved).toBe(2)
      const want = expected(objects, group)
      read.forEach((bytes, i) => {
        expect(Buffer.from(bytes).equals(want[i]!)).toBe(true)
        // The head and the end-of-stream bytes are the object's own.
        expect(Buffer.from(bytes.subarray(0, 200)).equals(Buffer.from(objects[i]!.subarray(0, 200)))).toBe(
          true,
        )
      })
      expect(pooled || read.every((b) => !(b.buffer instanceof SharedArrayBuffer))).toBe(true)
    }
  })

  it('a single part is moved within itself, and the store says where its rows began', async () => {
    const objects = [shaped(4096, 256, 64)]
    const group: RowGroup = { ...windowOf([4096], 11), rowBytes: 256, trailer: 8 }
    const cid = await store.put(objects[0]!)
    const at: (number | undefined)[] = []
    const read = [await store.get(cid, { rows: { group, part: 0, moved: (offset) => at.push(offset) } })]
    expect(at).toEqual([64])
    expect(Buffer.from(read[0]!).equals(expected(objects, group)[0]!)).toBe(true)
  })

  it('a single part read a chunk at a time: rows of every size, a head not a whole row, the last chunk short', async () => {
    // Over 1 MiB each (else read on the calling thread). 6 000 rows of 200 bytes: 655 rows a
    // 128 KiB chunk, so 10 chunks, the last of 105 rows; rows of 20 000 bytes: one a chunk.
    for (const [count, rowBytes, head] of [
      [6000, 200, 77],
      [300, 4096, 5],
      [70, 20000, 3],
    ] as const) {
      const objects = [shaped(count, rowBytes, head)]
      const group: RowGroup = { ...windowOf([count], count), rowBytes, trailer: 8 }
      const { read, moved } = await readGroup(objects, group)
      expect(moved).toBe(1)
      expect(Buffer.from(read[0]!).equals(expected(objects, group)[0]!)).toBe(true)
    }
  })

  it('a single part lent a spare is moved in it, with room past the object or without', async () => {
    for (const room of [128 << 10, 0]) {
      const objects = [shaped(4096, 512, 64)]
      const group: RowGroup = { ...windowOf([4096], 23 + room), rowBytes: 512, trailer: 8 }
      const lent: SharedArrayBuffer[] = []
      const buffers: ReadBuffers = {
        take: (size) => {
          const spare = new SharedArrayBuffer(size! + room)
          lent.push(spare)
          return spare
        },
        give: () => {},
        hold: () => {},
      }
      const { read, moved } = await readGroup(objects, group, buffers)
      expect(moved).toBe(1)
      expect(read[0]!.buffer).toBe(lent[0])
      expect(Buffer.from(read[0]!).equals(expected(objects, group)[0]!)).toBe(true)
    }
  })

  it('a single part that fails its digest comes back as read, with no row moved', async () => {
    const objects = [shaped(4096, 512, 64)]
    const group: RowGroup = { ...windowOf([4096], 17), rowBytes: 512, trailer: 8 }
    const cid = await store.put(objects[0]!)
    const hex = Buffer.from(cid.multihash.digest).toString('hex')
    const damaged = Buffer.from(objects[0]!)
    damaged[5000] = damaged[5000]! ^ 1
    await writeFile(join(root, 'objects', 'sha2-256', hex.slice(0, 2), hex), damaged)
    let moved = 0
    const get = store.get(cid, {
      rows: {
        group,
        part: 0,
        moved: () => {
          moved++
        },
      },
    })
    expect((await rejection(get)).code).toBe('ERR_CAS_INTEGRITY')
    expect(moved).toBe(0)
  })

  it('moves that are not a permutation (a row twice, another never) leave the parts as read', async () => {
    for (const counts of [[4096], [2600, 2100]]) {
      const objects = counts.map((count) => shaped(count, 512, 64))
      const window = windowOf(counts, 19)
      const order = window.order.slice()
      order[1] = order[0]!
      const group: RowGroup = { ...window, order, rowBytes: 512, trailer: 8 }
      const { read, moved } = await readGroup(objects, group)
      expect(moved).toBe(0)
      read.forEach((bytes, i) => {
        expect(Buffer.from(bytes).equals(Buffer.from(objects[i]!))).toBe(true)
      })
    }
  })

  it('moves nothing when a part is read another way (under 1 MiB: on the calling thread)', async () => {
    const counts = [4096, 100]
    const objects = [shaped(counts[0]!, 512, 64), shaped(counts[1]!, 512, 64)]
    const group: RowGroup = { ...windowOf(counts, 5), rowBytes: 512, trailer: 8 }
    const { read, moved } = await readGroup(objects, group)
    expect(moved).toBe(0)
    read.forEach((bytes, i) => {
      expect(Buffer.from(bytes).equals(Buffer.from(objects[i]!))).toBe(true)
    })
  })

  it('a part that fails its digest is refused and no row of it reaches another part', async () => {
    const counts = [2600, 2600]
    const objects = [shaped(counts[0]!, 512, 64), shaped(counts[1]!, 512, 64)]
    const group: RowGroup = { ...windowOf(counts, 9), rowBytes: 512, trailer: 8 }
    const cids = await Promise.all(objects.map((o) => store.put(o)))
    const hex = Buffer.from(cids[1]!.multihash.digest).toString('hex')
    const damaged = Buffer.from(objects[1]!)
    damaged[1000] = damaged[1000]! ^ 1
    await writeFile(join(root, 'objects', 'sha2-256', hex.slice(0, 2), hex), damaged)
    let moved = 0
    const gets = cids.map((cid, part) =>
      store.get(cid, {
        rows: {
          group,
          part,
          moved: () => {
            moved++
          },
        },
      }),
    )
    expect((await rejection(gets[1]!)).code).toBe('ERR_CAS_INTEGRITY')
    expect(Buffer.from(await gets[0]!).equals(Buffer.from(objects[0]!))).toBe(true)
    expect(moved).toBe(0)
  })

  it('three parts in spares, rows not a divisor of a chunk: moved when all match, all as read when one is damaged', async () => {
    // Rows of 1 500 bytes (a chunk is not a whole number of them), three parts over 1 MiB.
    const counts = [900, 1200, 750]
    const objects = counts.map((c, i) => shaped(c, 1500, 40 + i * 24))
    const pool = new BufferPool()
    const buffers: ReadBuffers = {
      take: (size) => pool.take(size) ?? new SharedArrayBuffer(size!),
      give: () => {},
      hold: () => {},
    }
    const group: RowGroup = { ...windowOf(counts, 21), rowBytes: 1500, trailer: 8 }
    const { read, moved } = await readGroup(objects, group, buffers)
    expect(moved).toBe(3)
    const want = expected(objects, group)
    read.forEach((bytes, i) => {
      expect(Buffer.from(bytes).equals(want[i]!)).toBe(true)
    })
    const cids = await Promise.all(objects.map((o) => store.put(o)))
    const hex = Buffer.from(cids[2]!.multihash.digest).toString('hex')
    const damaged = Buffer.from(objects[2]!)
    damaged[5000] = damaged[5000]! ^ 1
    await writeFile(join(root, 'objects', 'sha2-256', hex.slice(0, 2), hex), damaged)
    const again: RowGroup = { ...windowOf(counts, 22), rowBytes: 1500, trailer: 8 }
    let movedAgain = 0
    const gets = cids.map((cid, part) =>
      store.get(cid, {
        buffers,
        rows: {
          group: again,
          part,
          moved: () => {
            movedAgain++
          },
        },
      }),
    )
    expect((await rejection(gets[2]!)).code).toBe('ERR_CAS_INTEGRITY')
    for (const part of [0, 1])
      expect(Buffer.from(await gets[part]!).equals(Buffer.from(objects[part]!))).toBe(true)
    expect(movedAgain).toBe(0)
  })

  it('a part never asked for holds the others only until the group signal aborts', async () => {
    const counts = [2600, 2600]
    const objects = [shaped(counts[0]!, 512, 64), shaped(counts[1]!, 512, 64)]
    const stop = new AbortController()
    const group: RowGroup = { ...windowOf(counts, 13), rowBytes: 512, trailer: 8, signal: stop.signal }
    const cid = await store.put(objects[0]!)
    let moved = 0
    let settled = false
    const get = store.get(cid, {
      rows: {
        group,
        part: 0,
        moved: () => {
          moved++
        },
      },
    })
    void get.then(() => {
      settled = true
    })
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(settled).toBe(false)
    stop.abort()
    expect(Buffer.from(await get).equals(Buffer.from(objects[0]!))).toBe(true)
    expect(moved).toBe(0)
  })
})

describe("permuteRows, here on the caller's thread", () => {
  /** Rows of 3 bytes, each filled with its value: bucket b row r holds 10 * b + r. */
  const rowsOf = (counts: number[]) =>
    counts.map((n, b) => Uint8Array.from({ length: n * 3 }, (_, i) => 10 * b + Math.floor(i / 3)))

  it('moves each position to the row its order names, across buckets, two of them in one buffer', () => {
    const [first, second] = rowsOf([3, 2])
    // Both buckets in one buffer, the second after a gap: rows move by copyWithin there.
    const joined = new Uint8Array(3 * 3 + 4 + 2 * 3)
    joined.set(first!, 0)
    joined.set(second!, 13)
    const bucketOf = Uint32Array.from([0, 0, 0, 1, 1])
    const rowOf = Uint32Array.from([0, 1, 2, 0, 1])
    const order = Uint32Array.from([4, 0, 3, 1, 2])
    permuteRows({
      buffers: [joined.buffer, joined.buffer],
      offsets: [0, 13],
      rowBytes: 3,
      bucketOf,
      rowOf,
      order,
    })
    const held = (p: number) => joined[(bucketOf[p] === 0 ? 0 : 13) + rowOf[p]! * 3]
    const before = [0, 1, 2, 10, 11]
    expect([0, 1, 2, 3, 4].map(held)).toEqual([...order].map((q) => before[q]))
    expect([...joined.subarray(9, 13)]).toEqual([0, 0, 0, 0])
  })

  it('refuses an order that is no permutation instead of walking forever', () => {
    const [rows] = rowsOf([2])
    expect(() =>
      permuteRows({
        buffers: [rows!.buffer],
        offsets: [0],
        rowBytes: 3,
        bucketOf: Uint32Array.from([0, 0]),
        rowOf: Uint32Array.from([0, 1]),
        order: Uint32Array.from([1, 1]),
      }),
    ).toThrow(RangeError)
  })
})
