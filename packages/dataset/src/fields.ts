/** Changes to the base fields of a branch that write no data object. */
import type { AbortOptions } from '@dreamdb/cas'
import type { Dataset } from './dataset.js'
import { InvalidOptionError } from './errors.js'
import { assertMessage, type DatasetInternals } from './internal.js'

export interface DropFieldOptions extends AbortOptions {
  message?: string
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
  options: DropFieldOptions = {},
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
