/** `Dataset.restore`: a commit that brings back the state of another manifest. */
import type { AbortOptions } from '@dreamdb/cas'
import type { Manifest, Source } from '@dreamdb/manifest'
import { CID } from 'multiformats/cid'
import type { Dataset } from './dataset.js'
import { assertMessage, type DatasetInternals } from './internal.js'

export interface RestoreOptions extends AbortOptions {
  message?: string
}

/** The same data and layers: schema, timeline and layers alike (stats follow from them). */
function sameState(a: Manifest, b: Manifest): boolean {
  const state = (m: Manifest) =>
    JSON.stringify({ schema: m.schema, timeline: m.timeline?.toString() ?? null, layers: m.layers })
  return state(a) === state(b)
}

/**
 * One commit on the branch whose state is `source`'s (a ref or a manifest CID), decided on
 * the state this dataset shows: a commit on the branch since then is a conflict
 * (ERR_MANIFEST_CONFLICT) instead of being restored over unseen. Already that state: no
 * commit. Returns the branch's manifest.
 */
export async function restore(
  ds: Dataset,
  internals: DatasetInternals,
  source: Source,
  options: RestoreOptions = {},
): Promise<string> {
  const ref = internals.writableRef()
  assertMessage(options.message)
  const resolved = await ds.repository.resolve(source, options)
  if (sameState(resolved.manifest, ds.manifest)) return ds.currentManifest()
  const seen = CID.parse(ds.currentManifest())
  const result = await ds.repository.commit(
    ref,
    { kind: 'restore', from: resolved.target.manifest, state: resolved.manifest },
    {
      ...options,
      since: seen,
      conflictsWith: (theirs) => `the branch moved (${theirs.change.kind}) after this dataset read it`,
    },
  )
  return await internals.moved(result.manifest, options)
}
