import { CID } from 'multiformats/cid'
import { InvalidChangeError, InvalidSchemaError } from './errors.js'
import {
  type AnchorRange,
  BINARY_MEDIA,
  type Bucket,
  type Field,
  type FieldObject,
  type Manifest,
  METRICS,
  type Metric,
  SCALAR_KINDS,
  type Schema,
} from './model.js'

const FIELD_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/
const MAX_DIM = 1 << 16
const UINT64_MAX = 2n ** 64n - 1n

/** A field as a caller writes it: optional parts of an embedding take their defaults. */
export type FieldInput =
  | Field
  | {
      name: string
      family: 'embedding'
      dim: number
      metric?: Metric
      algorithm?: string | null
      spatialIndex?: CID | null
      compressor?: CID | null
      rerank?: boolean
    }

/** Validate one field definition and fill in defaults. Throws InvalidSchemaError. */
export function normalizeField(input: FieldInput, path: string): Field {
  const fail = (reason: string): never => {
    throw new InvalidSchemaError(path, reason)
  }
  if (typeof input !== 'object' || input === null) fail('a field must be an object')
  const name = (input as { name?: unknown }).name
  if (typeof name !== 'string' || !FIELD_NAME.test(name)) {
    fail(
      `field name ${JSON.stringify(name)} must start with a letter and use only letters, digits, '_', '.', '-' (at most 128)`,
    )
  }
  const field = input as Field
  switch (field.family) {
    case 'binary':
      if (!BINARY_MEDIA.includes(field.media)) {
        fail(`media ${JSON.stringify(field.media)} of '${name}' must be one of ${BINARY_MEDIA.join(', ')}`)
      }
      return { name: field.name, family: 'binary', media: field.media }
    case 'scalar':
      if (!SCALAR_KINDS.includes(field.kind)) {
        fail(`kind ${JSON.stringify(field.kind)} of '${name}' must be one of ${SCALAR_KINDS.join(', ')}`)
      }
      return { name: field.name, family: 'scalar', kind: field.kind }
    case 'embedding': {
      const e = input as Extract<FieldInput, { family: 'embedding' }>
      if (!Number.isSafeInteger(e.dim) || e.dim < 1 || e.dim > MAX_DIM) {
        fail(`dim ${JSON.stringify(e.dim)} of '${name}' must be an integer from 1 to ${MAX_DIM}`)
      }
      const metric = e.metric ?? 'cosine'
      if (!METRICS.includes(metric))
        fail(`metric ${JSON.stringify(metric)} of '${name}' must be one of ${METRICS.join(', ')}`)
      const algorithm = e.algorithm ?? null
      if (algorithm !== null && (typeof algorithm !== 'string' || algorithm.length === 0)) {
        fail(`algorithm of '${name}' must be a non-empty string or null`)
      }
      const link = (value: CID | null | undefined, what: string): CID | null => {
        if (value === undefined || value === null) return null
        const cid = CID.asCID(value)
        if (cid === null) fail(`${what} of '${name}' must be a CID`)
        return cid
      }
      const rerank = e.rerank ?? false
      if (typeof rerank !== 'boolean') fail(`rerank of '${name}' must be a boolean`)
      return {
        name: e.name,
        family: 'embedding',
        dim: e.dim,
        metric,
        algorithm,
        spatialIndex: link(e.spatialIndex, 'spatialIndex'),
        compressor: link(e.compressor, 'compressor'),
        rerank,
      }
    }
    default:
      return fail(
        `family ${JSON.stringify((field as { family?: unknown }).family)} of '${name}' must be binary, embedding or scalar`,
      )
  }
}

export function normalizeSchema(input: { fields: FieldInput[] }): Schema {
  if (typeof input !== 'object' || input === null || !Array.isArray(input.fields)) {
    throw new InvalidSchemaError('schema', 'a schema is { fields: [...] }')
  }
  const fields = input.fields.map((field, i) => normalizeField(field, `schema.fields[${i}]`))
  assertUniqueNames(
    fields.map((f) => f.name),
    'schema.fields',
  )
  return { fields }
}

export function assertUniqueNames(names: string[], path: string): void {
  const seen = new Set<string>()
  for (const name of names) {
    if (seen.has(name)) throw new InvalidSchemaError(path, `field name '${name}' appears twice`)
    seen.add(name)
  }
}

export function sameField(a: Field, b: Field): boolean {
  return JSON.stringify(fieldKey(a)) === JSON.stringify(fieldKey(b))
}

function fieldKey(field: Field): unknown {
  return field.family === 'embedding'
    ? {
        ...field,
        spatialIndex: field.spatialIndex?.toString() ?? null,
        compressor: field.compressor?.toString() ?? null,
      }
    : field
}

/** A bucket or segment as a caller supplies it. */
export interface BucketInput {
  records: number
  /** Base buckets: the anchors of the records in order. */
  anchorRanges?: AnchorRange[]
  /** Layer segments (whose anchors live in their objects): the bounds of those anchors. */
  anchorMin?: bigint
  anchorMax?: bigint
  /** Append time bounds in ms; default: the time of the commit. */
  timeMin?: number
  timeMax?: number
  fields: Record<string, FieldObject>
}

/**
 * Validate a bucket against the names it must carry (`required`, one object each, plus
 * optional `<name>/<part>` objects) and fill in anchor bounds and times.
 */
export function normalizeBucket(
  input: BucketInput,
  path: string,
  required: string[],
  options: { anchorsInline: boolean; now: number },
): Bucket {
  const fail = (reason: string): never => {
    throw new InvalidChangeError(path, reason)
  }
  if (typeof input !== 'object' || input === null) fail('a bucket must be an object')
  if (!Number.isSafeInteger(input.records) || input.records < 1) {
    fail(`records must be a positive integer, got ${JSON.stringify(input.records)}`)
  }
  let anchorMin: bigint
  let anchorMax: bigint
  let anchorRanges: AnchorRange[] | null = null
  if (options.anchorsInline) {
    if (!Array.isArray(input.anchorRanges) || input.anchorRanges.length === 0) {
      fail('anchorRanges must list the anchors of the records (mint them first)')
    }
    anchorRanges = input.anchorRanges!.map((range, i) => {
      if (
        typeof range?.start !== 'bigint' ||
        range.start < 0n ||
        !Number.isSafeInteger(range.count) ||
        range.count < 1
      ) {
        fail(`anchorRanges[${i}] must be { start: bigint >= 0, count: integer >= 1 }`)
      }
      if (range.start + BigInt(range.count) - 1n > UINT64_MAX)
        fail(`anchorRanges[${i}] passes the uint64 range`)
      return { start: range.start, count: range.count }
    })
    const covered = anchorRanges.reduce((sum, r) => sum + r.count, 0)
    if (covered !== input.records) fail(`anchorRanges cover ${covered} anchors for ${input.records} records`)
    anchorMin = anchorRanges[0]!.start
    anchorMax = 0n
    for (const range of anchorRanges) {
      const last = range.start + BigInt(range.count) - 1n
      if (range.start < anchorMin) anchorMin = range.start
      if (last > anchorMax) anchorMax = last
    }
  } else {
    if (
      typeof input.anchorMin !== 'bigint' ||
      typeof input.anchorMax !== 'bigint' ||
      input.anchorMin > input.anchorMax
    ) {
      fail('anchorMin and anchorMax must be bigints with anchorMin <= anchorMax')
    }
    if (input.anchorMin! < 0n || input.anchorMax! > UINT64_MAX) fail('anchor bounds must be uint64')
    anchorMin = input.anchorMin!
    anchorMax = input.anchorMax!
  }
  const timeMin = input.timeMin ?? options.now
  const timeMax = input.timeMax ?? input.timeMin ?? options.now
  if (!Number.isSafeInteger(timeMin) || !Number.isSafeInteger(timeMax) || timeMin < 0 || timeMax < timeMin) {
    fail(`timeMin ${timeMin} and timeMax ${timeMax} must be integers (ms) with timeMin <= timeMax`)
  }
  if (typeof input.fields !== 'object' || input.fields === null)
    fail('fields must map field names to objects')
  const fields: Record<string, FieldObject> = {}
  for (const [key, object] of Object.entries(input.fields)) {
    const [owner, part, ...more] = key.split('/')
    if (!required.includes(owner!) || more.length > 0 || part === '') {
      fail(
        `object key '${key}' must be one of ${required.map((r) => `'${r}'`).join(', ')} or '<field>/<part>'`,
      )
    }
    const cid = CID.asCID(object?.cid)
    if (cid === null) fail(`fields['${key}'].cid must be a CID`)
    if (!Number.isSafeInteger(object.bytes) || object.bytes < 0)
      fail(`fields['${key}'].bytes must be a byte count`)
    fields[key] = { cid: cid!, bytes: object.bytes }
  }
  for (const name of required) if (!(name in fields)) fail(`the object for field '${name}' is missing`)
  return { records: input.records, anchorMin, anchorMax, anchorRanges, timeMin, timeMax, fields }
}

/**
 * Check a layer change against the state it applies to and return the layer's normalized
 * field: a valid field definition (name, family, kind, dim, metric, ...), a name no base
 * field has, the same definition and parent when the layer exists, and a parent that is a
 * field or layer of the dataset. Throws InvalidSchemaError. Pure: callers run it before
 * writing a layer's objects, and commits run it again on the head they land on.
 */
export function checkLayer(
  head: {
    schema: { fields: readonly Field[] }
    layers: readonly Pick<Manifest['layers'][number], 'name' | 'parent' | 'field'>[]
  },
  request: { name: string; parent: string; field: FieldInput },
): Field {
  const where = `layer ${JSON.stringify(request?.name)}`
  if (
    typeof request !== 'object' ||
    request === null ||
    typeof request.field !== 'object' ||
    request.field === null
  ) {
    throw new InvalidSchemaError(where, 'a layer is { name, parent, field }')
  }
  const field = normalizeField({ ...request.field, name: request.name } as FieldInput, where)
  const baseNames = head.schema.fields.map((f) => f.name)
  const existing = head.layers.find((l) => l.name === field.name)
  if (existing === undefined && baseNames.includes(field.name)) {
    throw new InvalidSchemaError(`layer '${field.name}'`, 'a base field already has this name')
  }
  if (existing !== undefined && (!sameField(existing.field, field) || existing.parent !== request.parent)) {
    throw new InvalidSchemaError(
      `layer '${field.name}'`,
      `the layer exists with parent '${existing.parent}' and ${describeField(existing.field)}, not parent '${request.parent}' and ${describeField(field)}`,
    )
  }
  const parents = [...baseNames, ...head.layers.map((l) => l.name)]
  if (!parents.includes(request.parent) || request.parent === field.name) {
    throw new InvalidSchemaError(
      `layer '${field.name}'`,
      `parent field '${request.parent}' is not in the dataset (fields: ${parents.join(', ')})`,
    )
  }
  return field
}

function describeField(field: Field): string {
  switch (field.family) {
    case 'scalar':
      return `kind '${field.kind}'`
    case 'binary':
      return `media '${field.media}'`
    case 'embedding':
      return `dim ${field.dim}, metric '${field.metric}'${field.algorithm ? `, algorithm '${field.algorithm}'` : ''}`
  }
}
