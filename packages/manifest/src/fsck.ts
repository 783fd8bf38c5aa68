/**
 * `fsck`: is the store whole? From every ref, user and hidden, the one walker (`walk.ts`)
 * reaches every object; each must exist and verify. Reported, with counts and bytes:
 * unreadable refs, missing and corrupt objects (with the path that reached them), objects no
 * ref reaches, and leftovers of writers (staging files, ref temp files, probes, incomplete
 * uploads). Nothing is written.
 */
import type { AbortOptions, Leftover, LeftoverKind, Store } from '@dreamdb/cas'
import { digestKey, type ReachedKind, type UnreadableRef, type WalkedRef, walkReachable } from './walk.js'

export interface FsckOptions extends AbortOptions {
  /**
   * `all` (default) reads and hashes every reachable object; `metadata` reads manifests and
   * tree nodes, and checks data objects only by their presence (and size) in the listing.
   */
  verify?: 'all' | 'metadata'
  /** Requests in flight. @default 16 */
  concurrency?: number
  /** At most this many missing/corrupt/unreachable objects are listed one by one (all are counted). @default 1000 */
  listLimit?: number
}

export interface FsckObject {
  cid: string
  kind: ReachedKind
  /** The path from a ref that reached it. */
  via: string
  code: string
  reason: string
}

export interface Counted {
  objects: number
  bytes: number
}

export interface FsckReport {
  /** `true` when every ref is readable and every reachable object exists and verifies. */
  ok: boolean
  verify: 'all' | 'metadata'
  refs: { user: number; hidden: number; list: WalkedRef[]; unreadable: UnreadableRef[] }
  /** Objects the refs reach (bytes of those present), and how many were read. */
  reachable: Counted & { read: number; bytesRead: number; byKind: Record<string, number> }
  missing: FsckObject[]
  corrupt: FsckObject[]
  /** In the store, reached by no ref: GC's candidates (once older than its grace period). `list`: raw CIDs. */
  unreachable: Counted & { list: string[] }
  /** Everything in the store. */
  stored: Counted
  leftovers: Counted & { byKind: Partial<Record<LeftoverKind, Counted>>; list: Leftover[] }
  durationMs: number
}

/** Check a store. Damage is reported, not thrown; I/O failures and aborts are thrown. */
export async function fsck(store: Store, options: FsckOptions = {}): Promise<FsckReport> {
  const started = Date.now()
  const { signal, verify = 'all', concurrency, listLimit = 1000 } = options
  const walk = await walkReachable(store, {
    verify: verify === 'all',
    ...(signal ? { signal } : {}),
    ...(concurrency ? { concurrency } : {}),
  })
  const listed = new Map<string, number>()
  const cids = new Map<string, string>()
  let storedBytes = 0
  for await (const object of store.list({ ...(signal ? { signal } : {}) })) {
    const key = digestKey(object.cid)
    listed.set(key, object.size)
    cids.set(key, object.cid.toString())
    storedBytes += object.size
  }
  const problem = (p: {
    cid: { toString(): string }
    kind: ReachedKind
    via: string
    code: string
    reason: string
  }) => ({
    cid: p.cid.toString(),
    kind: p.kind,
    via: p.via,
    code: p.code,
    reason: p.reason,
  })
  const missing: FsckObject[] = walk.problems.filter((p) => p.problem === 'missing').map(problem)
  const corrupt: FsckObject[] = walk.problems.filter((p) => p.problem === 'corrupt').map(problem)
  const seenMissing = new Set(missing.map((m) => m.cid))
  let reachableBytes = 0
  const byKind: Record<string, number> = {}
  for (const [key, reached] of walk.reached) {
    byKind[reached.kind] = (byKind[reached.kind] ?? 0) + 1
    const size = listed.get(key)
    if (size !== undefined) {
      reachableBytes += size
      continue
    }
    // Not read (a data object under `metadata`), and not in the store.
    if (!seenMissing.has(reached.cid.toString())) {
      seenMissing.add(reached.cid.toString())
      missing.push({
        cid: reached.cid.toString(),
        kind: reached.kind,
        via: reached.via,
        code: 'ERR_CAS_NOT_FOUND',
        reason: 'not in the store',
      })
    }
  }
  const unreachable: string[] = []
  let unreachableBytes = 0
  let unreachableCount = 0
  for (const [key, size] of listed) {
    if (walk.reached.has(key)) continue
    unreachableCount++
    unreachableBytes += size
    if (unreachable.length < listLimit) unreachable.push(cids.get(key)!)
  }
  const leftovers: Leftover[] = []
  const byLeftoverKind: Partial<Record<LeftoverKind, Counted>> = {}
  let leftoverBytes = 0
  for await (const leftover of store.listLeftovers({ ...(signal ? { signal } : {}) })) {
    leftovers.push(leftover)
    leftoverBytes += leftover.size
    const k = byLeftoverKind[leftover.kind] ?? { objects: 0, bytes: 0 }
    byLeftoverKind[leftover.kind] = k
    k.objects++
    k.bytes += leftover.size
  }
  return {
    ok: walk.unreadableRefs.length === 0 && missing.length === 0 && corrupt.length === 0,
    verify,
    refs: {
      user: walk.refs.filter((r) => !r.hidden).length,
      hidden: walk.refs.filter((r) => r.hidden).length,
      list: walk.refs,
      unreadable: walk.unreadableRefs,
    },
    reachable: {
      objects: walk.reached.size,
      bytes: reachableBytes,
      read: walk.objectsRead,
      bytesRead: walk.bytesRead,
      byKind,
    },
    missing: missing.slice(0, listLimit),
    corrupt: corrupt.slice(0, listLimit),
    unreachable: { objects: unreachableCount, bytes: unreachableBytes, list: unreachable },
    stored: { objects: listed.size, bytes: storedBytes },
    leftovers: {
      objects: leftovers.length,
      bytes: leftoverBytes,
      byKind: byLeftoverKind,
      list: leftovers.slice(0, listLimit),
    },
    durationMs: Date.now() - started,
  }
}
