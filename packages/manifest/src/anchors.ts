import type { AbortOptions, Store } from '@dreamdb/cas'
import { INTERNAL_PREFIX } from './names.js'

/** The counter every writer reserves anchor blocks from, shared by all refs of a store. */
export const ANCHOR_COUNTER_REF = `${INTERNAL_PREFIX}anchor-counter`
/** Anchors reserved per compare-and-swap of the counter. */
export const DEFAULT_ANCHOR_BLOCK = 1 << 16
/** Anchor 0 is never minted, so it can mean "none" in encodings above this layer. */
const FIRST_ANCHOR = 1n
const UINT64_MAX = 2n ** 64n - 1n

const encode = (value: bigint): Uint8Array => new TextEncoder().encode(value.toString())
const decode = (bytes: Uint8Array): bigint => BigInt(new TextDecoder().decode(bytes))

/**
 * Mints anchors, the stable uint64 ids of records. A writer reserves a block of anchors
 * by moving one counter ref forward with compare-and-swap, then hands anchors out of that
 * block in memory. Blocks of two writers can never overlap (the counter only moves by
 * CAS), whatever branches they write to; a writer that dies leaves a gap, never a
 * duplicate. At the default block of 65 536 a billion records cost about 15 000 counter
 * updates, and uint64 leaves room for 2^48 blocks.
 */
export class AnchorMinter {
  readonly #store: Store
  readonly #block: number
  #next = 0n
  #end = 0n
  /** Serialises reservations within this process. */
  #queue: Promise<unknown> = Promise.resolve()

  constructor(store: Store, block = DEFAULT_ANCHOR_BLOCK) {
    this.#store = store
    this.#block = block
  }

  /** `count` consecutive anchors, the first of which is returned. */
  mint(count: number, options: AbortOptions = {}): Promise<bigint> {
    if (!Number.isSafeInteger(count) || count < 1)
      throw new RangeError(`anchor count must be >= 1, got ${count}`)
    const result = this.#queue.then(async () => {
      if (this.#end - this.#next < BigInt(count)) {
        const reserved = BigInt(Math.max(count, this.#block))
        this.#next = await this.#reserve(reserved, options)
        this.#end = this.#next + reserved
      }
      const start = this.#next
      this.#next += BigInt(count)
      return start
    })
    this.#queue = result.catch(() => {})
    return result
  }

  async #reserve(size: bigint, options: AbortOptions): Promise<bigint> {
    for (;;) {
      options.signal?.throwIfAborted()
      const current = await this.#store.readRef(ANCHOR_COUNTER_REF, options)
      try {
        if (current === undefined) {
          await this.#store.createRef(ANCHOR_COUNTER_REF, encode(FIRST_ANCHOR + size), options)
          return FIRST_ANCHOR
        }
        const start = decode(current.value)
        if (start + size > UINT64_MAX) throw new RangeError('the uint64 anchor space is exhausted')
        await this.#store.updateRef(ANCHOR_COUNTER_REF, encode(start + size), current.version, options)
        return start
      } catch (error) {
        // Another writer reserved first; read the counter again.
        if ((error as { code?: string }).code !== 'ERR_CAS_REF_CONFLICT') throw error
      }
    }
  }
}
