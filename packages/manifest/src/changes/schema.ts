/** Schema: add base fields, or redefine existing ones within their family. */
import { InvalidChangeError, InvalidSchemaError } from '../errors.js'
import type { Change, Field, Manifest } from '../model.js'
import { assertUniqueNames, type FieldInput, normalizeField } from '../schema.js'
import { codecObjects, type PreparedChange } from './change.js'

export interface SchemaRequest {
  kind: 'schema'
  add?: FieldInput[]
  replace?: FieldInput[]
}

export function prepareSchema(request: SchemaRequest, head: Manifest): PreparedChange {
  const add = (request.add ?? []).map((f, i) => normalizeField(f, `schema.add[${i}]`))
  const replace = (request.replace ?? []).map((f, i) => normalizeField(f, `schema.replace[${i}]`))
  if (add.length + replace.length === 0) throw new InvalidChangeError('schema', 'nothing to add or replace')
  assertUniqueNames(
    [...head.schema.fields.map((f) => f.name), ...head.layers.map((l) => l.name), ...add.map((f) => f.name)],
    'schema.add',
  )
  for (const field of replace) {
    const current = head.schema.fields.find((f) => f.name === field.name)
    if (current === undefined)
      throw new InvalidSchemaError('schema.replace', `there is no field '${field.name}'`)
    if (current.family !== field.family) {
      throw new InvalidSchemaError(
        'schema.replace',
        `'${field.name}' is ${current.family}, not ${field.family}`,
      )
    }
  }
  return {
    kind: 'schema',
    objects: codecObjects([...add, ...replace]).map((cid) => ({ cid, path: 'schema' })),
    async apply(head) {
      const fields: Field[] = head.schema.fields.map((f) => replace.find((r) => r.name === f.name) ?? f)
      fields.push(...add)
      const bytes = { ...head.stats.bytes }
      for (const f of add) bytes[f.name] = 0
      return {
        schema: { fields },
        change: { kind: 'schema', added: add.map((f) => f.name), replaced: replace.map((f) => f.name) },
        message: `schema: ${[...add.map((f) => `add ${f.name}`), ...replace.map((f) => `change ${f.name}`)].join(', ')}`,
        stats: { ...head.stats, bytes },
      }
    },
    conflict(theirs: Change) {
      if (theirs.kind === 'schema' || theirs.kind === 'migrate' || theirs.kind === 'drop-field')
        return 'the schema was changed concurrently'
      if ((theirs.kind === 'append' || theirs.kind === 'merge') && replace.length > 0) {
        return `records were appended with the old definition of ${replace.map((f) => f.name).join(', ')}`
      }
      if (theirs.kind === 'layer' && add.some((f) => f.name === theirs.name)) {
        return `a layer named '${theirs.name}' was added concurrently`
      }
      return undefined
    },
  }
}
