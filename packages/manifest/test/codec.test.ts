import { readFileSync } from 'node:fs'
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { decodeTreeNode, encodeTreeNode } from '../src/codec.js'
import {
  decodeManifest,
  decodeRefTarget,
  encodeManifest,
  encodeRefTarget,
  type Manifest,
} from '../src/index.js'
import { SAMPLE_BRANCH, SAMPLE_LEAF, SAMPLE_MANIFEST, SAMPLE_REF } from './helpers/samples.js'

const fixture = (name: string) =>
  Buffer.from(readFileSync(new URL(`./fixtures/${name}.v1.hex`, import.meta.url), 'utf8').trim(), 'hex')
const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex')

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (error) {
    return (error as { code?: string }).code
  }
  return undefined
}

describe('hex fixtures (format version 1)', () => {
  it.each([
    [
      'manifest',
      () => encodeManifest(SAMPLE_MANIFEST),
      (b: Uint8Array) => decodeManifest(b, 'm'),
      SAMPLE_MANIFEST,
    ],
    ['tree-leaf', () => encodeTreeNode(SAMPLE_LEAF), (b: Uint8Array) => decodeTreeNode(b, 'l'), SAMPLE_LEAF],
    [
      'tree-branch',
      () => encodeTreeNode(SAMPLE_BRANCH),
      (b: Uint8Array) => decodeTreeNode(b, 'b'),
      SAMPLE_BRANCH,
    ],
    ['ref', () => encodeRefTarget(SAMPLE_REF), (b: Uint8Array) => decodeRefTarget(b, 'r'), SAMPLE_REF],
  ] as const)('%s encodes to the checked-in bytes and decodes back', (name, encode, decode, sample) => {
    const bytes = fixture(name)
    expect(hex(encode())).toBe(hex(bytes))
    expect(decode(bytes)).toEqual(sample)
  })

  it('uint64 anchors above 2^53 survive exactly', () => {
    const leaf = decodeTreeNode(fixture('tree-leaf'), 'l')
    expect('buckets' in leaf && leaf.buckets[0]!.anchorMax).toBe(2n ** 63n + 5n)
  })
})

describe('strict decoding', () => {
  const valid = fixture('manifest')
  const form = dagCbor.decode(valid) as Record<string, unknown>
  const reencode = (patch: Record<string, unknown>) => dagCbor.encode({ ...form, ...patch })

  it('rejects a newer format version with UnsupportedVersionError', () => {
    expect(codeOf(() => decodeManifest(reencode({ v: 2 }), 'm'))).toBe('ERR_MANIFEST_UNSUPPORTED_VERSION')
  })

  it.each([
    ['an unknown key', { extra: 1 }],
    ['a wrong type', { message: 42 }],
    ['a negative count', { timestamp: -1 }],
    ['a fractional count', { timestamp: 1.5 }],
    ['another object type', { type: 'tree' }],
    ['an unknown change', { change: { kind: 'merge' } }],
    ['an unknown field family', { schema: { fields: [{ name: 'x', family: 'tensor' }] } }],
    ['a non-CID link', { timeline: 'bafy...' }],
  ])('rejects %s with CorruptObjectError', (_, patch) => {
    expect(codeOf(() => decodeManifest(reencode(patch), 'm'))).toBe('ERR_MANIFEST_CORRUPT')
  })

  it('rejects a missing key', () => {
    const { message: _, ...rest } = form
    expect(codeOf(() => decodeManifest(dagCbor.encode(rest), 'm'))).toBe('ERR_MANIFEST_CORRUPT')
  })

  it('rejects trailing bytes, duplicate keys, NaN, floats and non-minimal integers', () => {
    const timestamp = `1b${(1_790_000_000_000).toString(16).padStart(16, '0')}`
    expect(hex(valid)).toContain(timestamp)
    const variants = {
      trailing: Buffer.concat([valid, Buffer.from([0])]),
      duplicateKey: Buffer.from(hex(valid).replace('aa6176', 'ab61760161 76'.replace(' ', '')), 'hex'),
      nan: Buffer.from(hex(valid).replace(timestamp, 'fb7ff8000000000000'), 'hex'),
      float: Buffer.from(
        hex(valid).replace(
          timestamp,
          `fb${Buffer.from(new Float64Array([1_790_000_000_000]).buffer)
            .reverse()
            .toString('hex')}`,
        ),
        'hex',
      ),
      nonMinimalInt: Buffer.from(hex(valid).replace('617601', '61761801'), 'hex'),
    }
    for (const [name, bytes] of Object.entries(variants)) {
      expect(
        codeOf(() => decodeManifest(bytes, 'm')),
        name,
      ).toBe('ERR_MANIFEST_CORRUPT')
    }
  })

  it('names the object and the problem in the message', () => {
    let message = ''
    try {
      decodeManifest(reencode({ message: 42 }), 'bafyEXAMPLE')
    } catch (error) {
      message = (error as Error).message
    }
    expect(message).toBe('Manifest bafyEXAMPLE is corrupt: message must be a string')
  })
})

/** A small deterministic PRNG so a failing case can be replayed from its seed. */
function prng(seed: number) {
  let state = seed >>> 0
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number) => Math.floor(next() * n)
  return { next, int, pick: <T>(items: readonly T[]) => items[int(items.length)]! }
}

async function randomManifest(seed: number): Promise<Manifest> {
  const r = prng(seed)
  const cid = async () =>
    CID.createV1(r.pick([0x55, 0x71]), await sha256.digest(new Uint8Array([r.int(256), r.int(256)])))
  const name = () => `f${r.int(1000)}${r.pick(['', '_x', '.y', '-z'])}`
  const field = async () => {
    const family = r.pick(['binary', 'embedding', 'scalar'] as const)
    if (family === 'binary')
      return { name: name(), family, media: r.pick(['image', 'video', 'audio', 'bytes'] as const) }
    if (family === 'scalar') {
      return {
        name: name(),
        family,
        kind: r.pick(['categorical', 'string', 'int', 'float', 'bool', 'timestamp'] as const),
      }
    }
    return {
      name: name(),
      family,
      dim: 1 + r.int(4096),
      metric: r.pick(['cosine', 'l2', 'ip'] as const),
      algorithm: r.pick([null, 'dreamdb.ivf-cosine']),
      spatialIndex: r.next() < 0.5 ? null : await cid(),
      compressor: r.next() < 0.5 ? null : await cid(),
      rerank: r.next() < 0.5,
    }
  }
  const fields = await Promise.all(Array.from({ length: 1 + r.int(5) }, field))
  const changes = [
    { kind: 'create' as const },
    { kind: 'append' as const, buckets: r.int(100), records: r.int(1e6) },
    { kind: 'layer' as const, name: name(), segments: r.int(9), records: r.int(99) },
    { kind: 'schema' as const, added: [name()], replaced: [] },
    { kind: 'compact' as const, start: r.int(50), replaced: 2 + r.int(10), buckets: 1 },
  ]
  // Consistent as every stored manifest is: no timeline means no buckets, a layer without
  // segments has no records, parents are distinct.
  const timeline = r.next() < 0.2 ? null : await cid()
  const buckets = timeline === null ? 0 : 1 + r.int(1e7)
  const parents = await Promise.all(Array.from({ length: r.int(3) }, cid))
  return {
    schema: { fields },
    timeline,
    layers: await Promise.all(
      Array.from({ length: r.int(3) }, async (_, i) => {
        const segments = r.next() < 0.3 ? null : await cid()
        return {
          name: `layer${i}`,
          parent: fields[0]!.name,
          field: { ...(await field()), name: `layer${i}` },
          segments,
          records: segments === null ? 0 : 1 + r.int(1e9),
          bytes: r.int(2 ** 40),
        }
      }),
    ),
    parents: parents.filter((p, i) => parents.findIndex((q) => q.equals(p)) === i),
    message: r.pick(['', 'append 3 records', 'ünïcødé ✓', 'x'.repeat(300)]),
    timestamp: r.int(2 ** 45),
    change: r.pick(changes),
    stats: {
      records: buckets + r.int(2 ** 50),
      buckets,
      bytes: Object.fromEntries(fields.map((f) => [f.name, r.int(2 ** 48)])),
    },
  }
}

describe('randomized round trip', () => {
  it('encode -> decode -> encode is the identity for 300 random manifests', async () => {
    for (let seed = 1; seed <= 300; seed++) {
      const manifest = await randomManifest(seed)
      const bytes = encodeManifest(manifest)
      const decoded = decodeManifest(bytes, `seed ${seed}`)
      expect(decoded, `seed ${seed}`).toEqual(manifest)
      expect(hex(encodeManifest(decoded)), `seed ${seed}`).toBe(hex(bytes))
    }
  })

  it('a flipped byte is rejected or decodes to a value whose only encoding is the new bytes', async () => {
    const r = prng(7)
    let rejected = 0
    for (let seed = 1; seed <= 300; seed++) {
      const bytes = Buffer.from(encodeManifest(await randomManifest(seed)))
      const at = r.int(bytes.length)
      bytes[at] = bytes[at]! ^ (1 << r.int(8))
      let decoded: Manifest | undefined
      try {
        decoded = decodeManifest(bytes, `seed ${seed}`)
      } catch (error) {
        expect(['ERR_MANIFEST_CORRUPT', 'ERR_MANIFEST_UNSUPPORTED_VERSION']).toContain(
          (error as { code?: string }).code,
        )
        rejected++
        continue
      }
      expect(hex(encodeManifest(decoded))).toBe(hex(bytes))
    }
    expect(rejected).toBeGreaterThan(150)
  })
})
