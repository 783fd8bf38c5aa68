import type { Codecs } from '@dreamdb/arrow'
import type { AbortOptions } from '@dreamdb/cas'
import type { Field } from '@dreamdb/manifest'
import type { Vector } from 'apache-arrow'
import { CID } from 'multiformats/cid'
import { InvalidOptionError } from './errors.js'

/**
 * What the modules behind `Dataset`'s verbs (append, layers, search, migrate, compact) need
 * beyond its public getters, while the dataset's state stays private to the class. Not
 * exported from the package.
 */
export interface DatasetInternals {
  /**
   * The codecs of the compressed embedding fields among `fields` (by default this state's
   * fields and layers), loaded once per spatial index and compressor pair and checked
   * against each field's dimension and metric.
   */
  codecs(options?: AbortOptions, fields?: readonly Field[]): Promise<Codecs>
  /** The branch a write commits to; `ERR_DATASET_READ_ONLY` at a pinned state. */
  writableRef(): string
  /** Move the dataset to the manifest a commit returned; its CID as a string. */
  moved(cid: CID, options: AbortOptions): Promise<string>
}

export function asCid(value: string | CID | null | undefined, what: string): CID | null {
  if (value === null || value === undefined) return null
  const cid = CID.asCID(value)
  if (cid !== null) return cid
  try {
    return CID.parse(value as string)
  } catch {
    throw new InvalidOptionError(what, value, 'is not a CID')
  }
}

/** A commit message is a string when given. */
export function assertMessage(message: unknown): void {
  if (message !== undefined && typeof message !== 'string')
    throw new InvalidOptionError('message', message, 'must be a string')
}

/**
 * The vectors of a FixedSizeList<Float32> column as one row-major array: exactly
 * `length * dim` values, without the padding Arrow may leave after the child buffer.
 */
export function flatVectors(column: Vector, dim: number): Float32Array {
  const data = column.data[0]!
  const child = data.children[0]!
  const start = child.offset + data.offset * dim
  return (child.values as Float32Array).subarray(start, start + column.length * dim)
}
