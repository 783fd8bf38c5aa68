import { createHash, type Hash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { InvalidCidError } from './errors.js'

/** Multicodec of opaque bytes. */
export const RAW_CODEC = 0x55
/** Multicodec of DAG-CBOR. */
export const DAG_CBOR_CODEC = 0x71
/** Multihash code of sha2-256, the only hash DreamDB writes. */
export const SHA2_256_CODE = 0x12

/** An incremental sha2-256 over chunks (node's OpenSSL, hardware-accelerated where it can be). */
export class Sha256 {
  readonly #hash: Hash = createHash('sha256')
  update(chunk: Uint8Array): void {
    this.#hash.update(chunk)
  }
  digest(): Uint8Array {
    return new Uint8Array(this.#hash.digest())
  }
}

export function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(bytes).digest())
}

/** The CIDv1 of a sha2-256 digest under a codec. */
export function cidFromDigest(digest: Uint8Array, codec: number = RAW_CODEC): CID {
  return CID.createV1(codec, Digest.create(SHA2_256_CODE, digest))
}

/**
 * The CID `put` would return for these bytes, computed without a store.
 *
 * @example
 * ```ts
 * cidOf(new TextEncoder().encode('hello')).toString() // 'bafkrei…'
 * ```
 */
export function cidOf(bytes: Uint8Array, codec: number = RAW_CODEC): CID {
  return cidFromDigest(sha256(bytes), codec)
}

/** Parse a CID string, accepting only sha2-256 CIDs (the only ones a store can verify). */
export function parseCid(value: string): CID {
  let cid: CID
  try {
    cid = CID.parse(value)
  } catch (cause) {
    throw new InvalidCidError(value, 'not a CID string', { cause })
  }
  assertSha256(cid, value)
  return cid
}

export function assertSha256(cid: CID, shown?: string): void {
  if (cid.multihash.code !== SHA2_256_CODE || cid.multihash.digest.length !== 32) {
    throw new InvalidCidError(
      shown ?? cid.toString(),
      `hash function 0x${cid.multihash.code.toString(16)} is not sha2-256; DreamDB stores only sha2-256 content`,
    )
  }
}

/** Accept a CID from any copy of multiformats (duck-typed, never `instanceof`). */
export function asSha256Cid(value: unknown): CID {
  const cid = CID.asCID(value)
  if (cid === null) {
    throw new InvalidCidError(String(value), 'not a CID object')
  }
  assertSha256(cid)
  return cid
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('hex')
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b)
}
