/**
 * Reading and naming refs: listing them (with damaged ones marked), resolving a source to
 * a target, and creating a ref (a dataset, a branch or a snapshot) with create-if-absent.
 */
import type { AbortOptions } from '@dreamdb/cas'
import { CID } from 'multiformats/cid'
import { encodeRefTarget } from './codec.js'
import { RefExistsError, RefNotFoundError, SnapshotLabelTakenError } from './errors.js'
import type { RefKind, RefTarget } from './model.js'
import { assertUserRefName } from './names.js'
import type { Repository, Source } from './repository.js'

export interface RefInfo {
  name: string
  kind: RefKind
  manifest: CID
  timeline: CID | null
}

/** A ref as `scanRefs` lists it: readable with its manifest's counts, or damaged. */
export type RefStatus =
  | (RefInfo & { damaged: false; records: number; buckets: number })
  | {
      name: string
      damaged: true
      /** The code of the error reading it (`ERR_CAS_REF_CORRUPT`, `ERR_MANIFEST_CORRUPT`, ...). */
      code: string
      reason: string
    }

/** What `snapshot` returns, as in the seed: `{ label, manifest, timeline }`. */
export interface SnapshotInfo {
  label: string
  manifest: string
  timeline: string | null
}

/** Errors that mean an object or ref is damaged (as opposed to unreachable or aborted). */
const DAMAGE = new Set([
  'ERR_CAS_REF_CORRUPT',
  'ERR_CAS_INTEGRITY',
  'ERR_CAS_NOT_FOUND',
  'ERR_MANIFEST_CORRUPT',
  'ERR_MANIFEST_INTEGRITY',
  'ERR_MANIFEST_UNSUPPORTED_VERSION',
])

/** Whether `error` says a stored object is damaged, missing or unreadable as DreamDB data. */
export function isDamage(error: unknown): boolean {
  return DAMAGE.has((error as { code?: string } | null)?.code ?? '')
}

function damagedRef(name: string, error: unknown): RefStatus {
  const e = error as { code: string; message: string }
  return { name, damaged: true, code: e.code, reason: e.message }
}

/** Refs under `prefix` (hidden `_` ones left out), each read, with its manifest's counts when asked. */
export async function* refEntries(
  repo: Repository,
  prefix: string,
  withManifest: boolean,
  options: AbortOptions,
): AsyncIterable<RefStatus> {
  for await (const name of repo.store.listRefs(prefix, options)) {
    if (name.startsWith('_')) continue
    let target: Awaited<ReturnType<Repository['readRef']>>
    try {
      target = await repo.readRef(name, options)
    } catch (error) {
      if (!isDamage(error)) throw error
      yield damagedRef(name, error)
      continue
    }
    if (target === undefined) continue
    const info = { name, kind: target.kind, manifest: target.manifest, timeline: target.timeline }
    if (!withManifest) {
      yield { ...info, damaged: false, records: 0, buckets: 0 }
      continue
    }
    try {
      const manifest = await repo.loadManifest(target.manifest, options)
      yield { ...info, damaged: false, records: manifest.stats.records, buckets: manifest.stats.buckets }
    } catch (error) {
      if (!isDamage(error)) throw error
      yield damagedRef(name, error)
    }
  }
}

/** The target a source names now: a ref's, or a manifest's as a snapshot would pin it. */
export async function targetOf(repo: Repository, from: Source, options: AbortOptions): Promise<RefTarget> {
  const cid = CID.asCID(from)
  if (cid !== null)
    return { kind: 'snapshot', manifest: cid, timeline: (await repo.loadManifest(cid, options)).timeline }
  const target = await repo.readRef(from as string, options)
  if (target === undefined) throw new RefNotFoundError(from as string, repo.store.url)
  return { kind: target.kind, manifest: target.manifest, timeline: target.timeline }
}

/**
 * Create-if-absent of a ref; RefExistsError naming what holds the name otherwise. Returns
 * the store's entry (its version is what the first commit to a branch swaps against).
 */
export async function createRef(repo: Repository, name: string, target: RefTarget, options: AbortOptions) {
  try {
    return await repo.store.createRef(name, encodeRefTarget(target), options)
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_CAS_REF_CONFLICT') throw error
    const existing = await repo.readRef(name, options)
    throw new RefExistsError(name, existing?.kind ?? 'ref', existing?.manifest.toString() ?? 'unknown')
  }
}

/**
 * Pin the state of `from` under `label`: create-if-absent of an immutable ref. The same
 * label on the same manifest is a no-op; on another one it is SnapshotLabelTakenError.
 */
export async function snapshot(
  repo: Repository,
  label: string,
  from: Source,
  options: AbortOptions,
): Promise<SnapshotInfo> {
  assertUserRefName(label)
  const target = await targetOf(repo, from, options)
  const info = (t: RefTarget): SnapshotInfo => ({
    label,
    manifest: t.manifest.toString(),
    timeline: t.timeline?.toString() ?? null,
  })
  try {
    await createRef(repo, label, { ...target, kind: 'snapshot' }, options)
    return info(target)
  } catch (error) {
    if ((error as { code?: string }).code !== RefExistsError.code) throw error
    const existing = (await repo.readRef(label, options))!
    if (existing.kind === 'snapshot' && existing.manifest.equals(target.manifest)) return info(existing)
    if (existing.kind === 'snapshot') {
      throw new SnapshotLabelTakenError(label, existing.manifest.toString(), target.manifest.toString())
    }
    throw error
  }
}
