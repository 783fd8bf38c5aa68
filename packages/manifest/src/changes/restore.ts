/**
 * Restore: a commit whose state (schema, timeline, layers, stats) is that of another
 * manifest, usually one of the branch's own past states (an append to take back). The
 * history keeps every commit, the restored-over ones included: nothing is rewritten or lost,
 * and the change records where the state came from. It is decided on the head it was asked
 * on, so any commit that lands in between is a conflict (restore again, knowing of it).
 */
import { CID } from 'multiformats/cid'
import { InvalidChangeError } from '../errors.js'
import type { Change, Manifest } from '../model.js'
import { codecObjects, type PreparedChange } from './change.js'

export interface RestoreRequest {
  kind: 'restore'
  /** The manifest whose state the branch takes. */
  from: CID
  /** That manifest, as read (and verified) by the caller. */
  state: Manifest
}

export function prepareRestore(request: RestoreRequest, _head: Manifest): PreparedChange {
  const { from, state } = request
  if (CID.asCID(from) === null || typeof state !== 'object' || state === null)
    throw new InvalidChangeError('restore', 'give the manifest to restore: its CID and the manifest')
  const fields = [...state.schema.fields, ...state.layers.map((l) => l.field)]
  return {
    kind: 'restore',
    objects: [
      { cid: from, path: 'restore.from' },
      ...(state.timeline === null ? [] : [{ cid: state.timeline, path: 'restore.state.timeline' }]),
      ...state.layers.flatMap((l) =>
        l.segments === null ? [] : [{ cid: l.segments, path: `restore.state.layers['${l.name}']` }],
      ),
      ...codecObjects(fields).map((cid) => ({ cid, path: 'restore.state.schema' })),
    ],
    async apply() {
      return {
        schema: state.schema,
        timeline: state.timeline,
        layers: state.layers,
        change: { kind: 'restore', from },
        message: `restore the state of ${from}`,
        stats: state.stats,
      }
    },
    conflict(theirs: Change) {
      return `the branch moved (${theirs.kind}) after the state to restore was chosen`
    },
  }
}
