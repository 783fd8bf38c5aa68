/**
 * Deleting refs (design/0008). A branch is deleted by compare-and-swap at the version read
 * (or at the manifest the caller names), so a concurrent move is never lost: it is a typed
 * `RefMovedError`. A snapshot is deleted only when forced. Hidden refs (`_dreamdb/...`, such
 * as ingest leases and the anchor counter) are refused by name: they are DreamDB's own.
 */
import type { AbortOptions } from '@dreamdb/cas'
import { CID } from 'multiformats/cid'
import { RefMovedError, RefNotFoundError, SnapshotImmutableError } from './errors.js'
import type { RefKind } from './model.js'
import type { Repository } from './repository.js'

export interface DeleteRefOptions extends AbortOptions {
  /**
   * Delete only if the ref still names this manifest (the state the caller saw). Without it,
   * the ref is deleted at the version this call reads, and a move between that read and the
   * delete is still a `RefMovedError`.
   */
  expect?: CID | string
  /** Required to delete a snapshot; without it a snapshot is `SnapshotImmutableError`. */
  force?: boolean
  /** Refuse a ref of another kind (`dreamdb branch --delete` passes `branch`). */
  kind?: RefKind
}

/** What a delete removed. */
export interface DeletedRef {
  name: string
  kind: RefKind
  manifest: CID
  timeline: CID | null
}

/**
 * Delete a branch, or a snapshot with `force`, by compare-and-swap. Two requests: the read
 * and the conditional delete. Nothing it reached is deleted: its objects stay until a
 * garbage collection finds them unreachable and older than the grace period.
 */
export async function deleteRef(
  repo: Repository,
  name: string,
  options: DeleteRefOptions = {},
): Promise<DeletedRef> {
  const current = await repo.readRef(name, options) // refuses hidden and invalid names
  if (current === undefined) throw new RefNotFoundError(name, repo.store.url)
  if (current.kind === 'snapshot' && options.force !== true)
    throw new SnapshotImmutableError(name, 'delete (force it to delete a snapshot)')
  if (options.kind !== undefined && current.kind !== options.kind)
    throw new SnapshotImmutableError(name, `delete as a ${options.kind}`)
  if (options.expect !== undefined) {
    const expected: CID = typeof options.expect === 'string' ? CID.parse(options.expect) : options.expect
    if (expected.toString() !== current.manifest.toString())
      throw new RefMovedError(name, expected.toString(), current.manifest.toString())
  }
  try {
    await repo.store.deleteRef(name, current.version, options)
  } catch (error) {
    const code = (error as { code?: string }).code
    if (code === 'ERR_CAS_REF_NOT_FOUND')
      throw new RefMovedError(name, current.manifest.toString(), null, { cause: error })
    if (code !== 'ERR_CAS_REF_CONFLICT') throw error
    const now = await repo.readRef(name, options).catch(() => undefined)
    throw new RefMovedError(name, current.manifest.toString(), now?.manifest.toString() ?? null, {
      cause: error,
    })
  }
  return { name, kind: current.kind, manifest: current.manifest, timeline: current.timeline }
}
