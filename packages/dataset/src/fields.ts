/** Changes to the base fields of a branch that write no data object. */
import type { AbortOptions } from '@dreamdb/cas'
import type { FieldInput } from '@dreamdb/manifest'
import type { Dataset } from './dataset.js'
import { InvalidOptionError } from './errors.js'
import { assertMessage, type DatasetInternals } from './internal.js'

export interface FieldChangeOptions extends AbortOptions {
  message?: string
}

/**
 * `Dataset.addFields`: one schema commit; records appended before read the new fields as
 * nulls. A bad definition or a name taken by a field or layer is refused by the commit
 * (`ERR_MANIFEST_INVALID_SCHEMA`, naming it) before anything is written.
 */
export async function addFields(
  ds: Dataset,
  internals: DatasetInternals,
  fields: readonly FieldInput[],
  options: FieldChangeOptions = {},
): Promise<string> {
  const ref = internals.writableRef()
  assertMessage(options.message)
  if (!Array.isArray(fields) || fields.length === 0)
    throw new InvalidOptionError('fields', fields, 'give at least one field to add')
  const result = await ds.repository.commit(ref, { kind: 'schema', add: [...fields] }, options)
  return await internals.moved(result.manifest, options)
}

/**
 * `Dataset.dropField`: one commit whose schema and buckets no longer hold the field (only
 * tree nodes are written); nothing is deleted. Refusals name the field, before anything is
 * written.
 */
export async function dropField(
  ds: Dataset,
  internals: DatasetInternals,
  name: string,
  options: FieldChangeOptions = {},
): Promise<string> {
  const ref = internals.writableRef()
  assertMessage(options.message)
  const { layers, schema } = ds.manifest
  if (!schema.fields.some((f) => f.name === name)) {
    const reason = layers.some((l) => l.name === name)
      ? 'is a layer; drop it with dropLayer'
      : `is not a base field of this dataset (its base fields: ${schema.fields.map((f) => `'${f.name}'`).join(', ')})`
    throw new InvalidOptionError('field', name, reason)
  }
  // The last field and one a layer derives from: refused by the commit (ERR_MANIFEST_INVALID_CHANGE).
  const result = await ds.repository.commit(ref, { kind: 'drop-field', field: name }, options)
  return await internals.moved(result.manifest, options)
}
