/**
 * What every kind of change provides to the commit protocol (commit.ts). A change kind is
 * one module in this folder: it validates its request against the head it starts from
 * (`prepare`, nothing written), builds its part of the next manifest (`apply`, run again
 * on a newer head when the commit rebases), and says which concurrent changes it does not
 * commute with (`conflict`). The protocol itself knows no kind.
 */
import type { AbortOptions } from '@dreamdb/cas'
import type { CID } from 'multiformats/cid'
import { InvalidChangeError } from '../errors.js'
import type { Bucket, Change, Manifest } from '../model.js'
import type { NodeStore } from '../tree.js'

/** A stored object a change refers to, with where in the request it was named. */
export interface ObjectRef {
  cid: CID
  path: string
}

export interface ApplyContext extends AbortOptions {
  nodes: NodeStore
  /** Buckets per leaf and children per node of new tree nodes. */
  fanout: number
}

/** What a change sets in the next manifest; everything else is carried over from the head. */
export type ManifestUpdate = Pick<Manifest, 'change' | 'message' | 'stats'> &
  Partial<Pick<Manifest, 'schema' | 'timeline' | 'layers'>> & {
    /** A head merged in: the next manifest's second parent. */
    merged?: CID
  }

/** A validated change, ready to be applied to any head it commutes with. */
export interface PreparedChange {
  kind: Change['kind']
  /** Objects the change names, which must be in the store before the manifest names them. */
  objects: ObjectRef[]
  /** The next manifest's fields, built on `head`. */
  apply(head: Manifest, context: ApplyContext): Promise<ManifestUpdate>
  /** Why `theirs` (already on the branch) does not commute with this change, or undefined. */
  conflict(theirs: Change): string | undefined
}

/**
 * Why `theirs` does not commute with a write or drop of layer `name`: a write or drop of the
 * same layer, or a schema change; undefined otherwise.
 */
export function layerConflict(name: string, theirs: Change): string | undefined {
  if (
    (theirs.kind === 'layer' && theirs.name === name) ||
    (theirs.kind === 'drop' && theirs.layer === name) ||
    (theirs.kind === 'merge' && theirs.layers.includes(name))
  )
    return `layer '${name}' was written concurrently`
  if (theirs.kind === 'schema')
    return `the schema changed (${[...theirs.added, ...theirs.replaced].join(', ')})`
  return undefined
}

/** Refuses to drop `name` (a layer or a base field) while layers of `head` derive from it. */
export function refuseDependants(head: Manifest, name: string, path: string): void {
  const derived = head.layers.filter((l) => l.parent === name).map((l) => `'${l.name}'`)
  if (derived.length === 0) return
  throw new InvalidChangeError(
    path,
    derived.length === 1
      ? `layer ${derived[0]} derives from '${name}'; drop it first`
      : `layers ${derived.join(', ')} derive from '${name}'; drop them first`,
  )
}

/** Whether a bucket's object key (`<field>` or `<field>/<part>`) belongs to the field `name`. */
export const ofField = (key: string, name: string): boolean => key === name || key.startsWith(`${name}/`)

/** The objects of buckets, named by their place in the request. */
export function objectsOf(buckets: Bucket[], path: string): ObjectRef[] {
  return buckets.flatMap((bucket, i) =>
    Object.entries(bucket.fields).map(([key, object]) => ({
      cid: object.cid,
      path: `${path}[${i}].fields['${key}']`,
    })),
  )
}

/** The spatial index and compressor an embedding field names (objects a change must find stored). */
export function codecObjects(
  fields: { family: string; spatialIndex?: CID | null; compressor?: CID | null }[],
) {
  return fields.flatMap((f) =>
    f.family === 'embedding' ? [f.spatialIndex, f.compressor].filter((c): c is CID => c != null) : [],
  )
}

/**
 * Stored bytes per field after adding (`sign` 1) or removing (-1) buckets: an object under
 * `<field>/<part>` counts for `<field>`.
 */
export function countBytes(bytes: Record<string, number>, buckets: Bucket[], sign: 1 | -1 = 1): void {
  for (const bucket of buckets) {
    for (const [key, object] of Object.entries(bucket.fields)) {
      const owner = key.split('/')[0]!
      bytes[owner] = (bytes[owner] ?? 0) + sign * object.bytes
    }
  }
}
