/**
 * The kinds of change a commit can make, one module each. Adding a kind: its module here,
 * its entry in `PREPARE`, and its record in `model.ts`'s `Change` (with the reader in
 * `codec.ts`, which stores it).
 */
import { InvalidChangeError } from '../errors.js'
import type { Manifest } from '../model.js'
import { type AppendRequest, prepareAppend } from './append.js'
import type { PreparedChange } from './change.js'
import { type CompactRequest, prepareCompact } from './compact.js'
import { type DropRequest, prepareDrop } from './drop.js'
import { type DropFieldRequest, prepareDropField } from './drop-field.js'
import { type LayerRequest, prepareLayer } from './layer.js'
import { type MergeRequest, prepareMerge } from './merge.js'
import { type MigrateRequest, prepareMigrate } from './migrate.js'
import { prepareRestore, type RestoreRequest } from './restore.js'
import { prepareSchema, type SchemaRequest } from './schema.js'

export type { ApplyContext, ManifestUpdate, ObjectRef, PreparedChange } from './change.js'

/** What a commit does. Data objects must already be in the store. */
export type ChangeRequest =
  | AppendRequest
  | LayerRequest
  | SchemaRequest
  | CompactRequest
  | MigrateRequest
  | DropRequest
  | DropFieldRequest
  | RestoreRequest
  | MergeRequest

const PREPARE: {
  [K in ChangeRequest['kind']]: (
    request: Extract<ChangeRequest, { kind: K }>,
    head: Manifest,
    now: number,
  ) => PreparedChange
} = {
  append: prepareAppend,
  layer: prepareLayer,
  schema: prepareSchema,
  compact: prepareCompact,
  migrate: prepareMigrate,
  drop: prepareDrop,
  'drop-field': prepareDropField,
  restore: prepareRestore,
  merge: prepareMerge,
}

/** Validate a request against the head it starts from; nothing is read or written. */
export function prepareChange(request: ChangeRequest, head: Manifest, now: number): PreparedChange {
  if (typeof request !== 'object' || request === null)
    throw new InvalidChangeError('change', 'a change must be an object')
  const prepare = Object.hasOwn(PREPARE, request.kind)
    ? (PREPARE[request.kind] as (request: ChangeRequest, head: Manifest, now: number) => PreparedChange)
    : undefined
  if (prepare === undefined)
    throw new InvalidChangeError('change', `unknown change kind ${JSON.stringify(request.kind)}`)
  return prepare(request, head, now)
}
