/**
 * Spatial indexes and compressors as content-addressed objects: strict canonical DAG-CBOR
 * (codec 0x71) maps tagged with a `format` string, so a CID of another kind is recognised
 * and refused by name. Float arrays are stored as little-endian byte strings.
 */
import {
  type AbortOptions,
  cidOf,
  DAG_CBOR_CODEC,
  decodeStrict,
  encodeStrict,
  ObjectShapeError,
  type ObjectStore,
  type StrictMap,
  shape,
} from '@dreamdb/cas'
import type { CID } from 'multiformats/cid'
import {
  CorruptObjectError,
  InvalidOptionError,
  UnsupportedVersionError,
  WrongObjectKindError,
} from './errors.js'
import { MAX_BITS, MAX_DIM, METRICS, paddedDimOf, type SpatialIndex, type VectorCompressor } from './model.js'
import { ROTATION_ROUNDS } from './rotation.js'

export const SPATIAL_INDEX_FORMAT = 'dreamdb.vector.ivf'
export const COMPRESSOR_FORMAT = 'dreamdb.vector.rabitq'
export const OBJECT_VERSION = 1

const WHAT: Record<string, string> = {
  [SPATIAL_INDEX_FORMAT]: 'a spatial index (dreamdb.vector.ivf)',
  [COMPRESSOR_FORMAT]: 'a vector compressor (dreamdb.vector.rabitq)',
}

const { map, int, bytes, oneOf } = shape

function float32Bytes(values: Float32Array): Uint8Array {
  const out = new Uint8Array(values.length * 4)
  const view = new DataView(out.buffer)
  for (let i = 0; i < values.length; i++) view.setFloat32(i * 4, values[i]!, true)
  return out
}

function float32s(raw: Uint8Array): Float32Array {
  const out = new Float32Array(raw.length / 4)
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength)
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(i * 4, true)
  return out
}

function spatialIndexForm(s: SpatialIndex): StrictMap {
  return {
    format: SPATIAL_INDEX_FORMAT,
    version: OBJECT_VERSION,
    dim: s.dim,
    metric: s.metric,
    lists: s.lists,
    centroids: float32Bytes(s.centroids),
    training: {
      seed: s.training.seed,
      iterations: s.training.iterations,
      samples: s.training.samples,
      maxPointsPerList: s.training.maxPointsPerList,
    },
  }
}

function compressorForm(c: VectorCompressor): StrictMap {
  return {
    format: COMPRESSOR_FORMAT,
    version: OBJECT_VERSION,
    dim: c.dim,
    paddedDim: c.paddedDim,
    metric: c.metric,
    bits: c.bits,
    rotation: {
      kind: c.rotation.kind,
      seed: c.rotation.seed,
      rounds: c.rotation.rounds,
      signs: c.rotation.signs,
    },
  }
}

function readSpatialIndex(value: unknown): SpatialIndex {
  const o = map(value, 'spatial index', [
    'format',
    'version',
    'dim',
    'metric',
    'lists',
    'centroids',
    'training',
  ])
  const dim = int(o.dim, 'dim', 1, MAX_DIM)
  const metric = oneOf(o.metric, 'metric', METRICS)
  const lists = int(o.lists, 'lists', 1, 1 << 20)
  const centroids = float32s(bytes(o.centroids, 'centroids', lists * dim * 4))
  for (let i = 0; i < centroids.length; i++) {
    if (!Number.isFinite(centroids[i]!)) throw new ObjectShapeError(`centroid value ${i} is not finite`)
  }
  const t = map(o.training, 'training', ['seed', 'iterations', 'samples', 'maxPointsPerList'])
  return {
    kind: 'ivf',
    dim,
    metric,
    lists,
    centroids,
    training: {
      seed: int(t.seed, 'training.seed', 0, 0xffffffff),
      iterations: int(t.iterations, 'training.iterations', 0, 1000),
      samples: int(t.samples, 'training.samples', 1, Number.MAX_SAFE_INTEGER),
      maxPointsPerList: int(t.maxPointsPerList, 'training.maxPointsPerList', 1, 1 << 20),
    },
  }
}

function readCompressor(value: unknown): VectorCompressor {
  const o = map(value, 'compressor', ['format', 'version', 'dim', 'paddedDim', 'metric', 'bits', 'rotation'])
  const dim = int(o.dim, 'dim', 1, MAX_DIM)
  const paddedDim = int(o.paddedDim, 'paddedDim', 64, MAX_DIM)
  if (paddedDim !== paddedDimOf(dim))
    throw new ObjectShapeError(`paddedDim ${paddedDim} is not ${paddedDimOf(dim)}`)
  const r = map(o.rotation, 'rotation', ['kind', 'seed', 'rounds', 'signs'])
  if (r.kind !== 'fht-kac') throw new ObjectShapeError(`rotation.kind must be 'fht-kac'`)
  const rounds = int(r.rounds, 'rotation.rounds', ROTATION_ROUNDS, ROTATION_ROUNDS)
  return {
    kind: 'rabitq',
    dim,
    paddedDim,
    metric: oneOf(o.metric, 'metric', METRICS),
    bits: int(o.bits, 'bits', 1, MAX_BITS),
    rotation: {
      kind: 'fht-kac',
      seed: int(r.seed, 'rotation.seed', 0, 0xffffffff),
      rounds,
      signs: bytes(r.signs, 'rotation.signs', (rounds * paddedDim) / 8),
    },
  }
}

/** The canonical DAG-CBOR bytes of a spatial index (its CID is `cidOf(bytes, 0x71)`). */
export function encodeSpatialIndex(spatialIndex: SpatialIndex): Uint8Array {
  return encodeStrict(spatialIndexForm(spatialIndex))
}

/** The canonical DAG-CBOR bytes of a compressor. */
export function encodeCompressor(compressor: VectorCompressor): Uint8Array {
  return encodeStrict(compressorForm(compressor))
}

function decodeObject<T>(
  raw: Uint8Array,
  where: string,
  format: string,
  read: (value: unknown) => T,
  form: (value: T) => StrictMap,
): T {
  return decodeStrict(raw, {
    check(value) {
      const found = (value as StrictMap | null)?.format
      if (typeof value !== 'object' || value === null || found !== format) {
        const actual =
          typeof found === 'string'
            ? (WHAT[found] ?? `a '${found}' object`)
            : 'a DAG-CBOR value without a dreamdb.vector format'
        throw new WrongObjectKindError(where, WHAT[format]!, actual)
      }
      const version = (value as StrictMap).version
      if (version !== OBJECT_VERSION) {
        if (typeof version === 'number' && Number.isInteger(version) && version > OBJECT_VERSION) {
          throw new UnsupportedVersionError(WHAT[format]!, version, OBJECT_VERSION)
        }
        throw new CorruptObjectError(WHAT[format]!, where, `version must be ${OBJECT_VERSION}`)
      }
    },
    read,
    form,
    corrupt: (reason, options) => new CorruptObjectError(WHAT[format]!, where, reason, options),
  })
}

/** Decode and check a spatial index; `where` names it in errors (its CID). */
export function decodeSpatialIndex(raw: Uint8Array, where = 'object'): SpatialIndex {
  return decodeObject(raw, where, SPATIAL_INDEX_FORMAT, readSpatialIndex, spatialIndexForm)
}

/** Decode and check a compressor; `where` names it in errors (its CID). */
export function decodeCompressor(raw: Uint8Array, where = 'object'): VectorCompressor {
  return decodeObject(raw, where, COMPRESSOR_FORMAT, readCompressor, compressorForm)
}

const digests = new WeakMap<object, Uint8Array>()

/** The sha2-256 digest of an object's canonical encoding (the digest inside its CID). */
export function digestOf(value: SpatialIndex | VectorCompressor): Uint8Array {
  let digest = digests.get(value)
  if (digest === undefined) {
    const raw = value.kind === 'ivf' ? encodeSpatialIndex(value) : encodeCompressor(value)
    digest = cidOf(raw, DAG_CBOR_CODEC).multihash.digest
    digests.set(value, digest)
  }
  return digest
}

function checkCid(cid: CID, format: string): void {
  if (cid.code !== DAG_CBOR_CODEC) {
    throw new WrongObjectKindError(
      cid.toString(),
      WHAT[format]!,
      `an object of codec 0x${cid.code.toString(16)} (not DAG-CBOR)`,
    )
  }
}

/**
 * Store a spatial index; returns its CID (DAG-CBOR). Storing the same index twice writes
 * nothing the second time.
 */
export async function saveSpatialIndex(
  store: ObjectStore,
  spatialIndex: SpatialIndex,
  options?: AbortOptions,
): Promise<CID> {
  if (spatialIndex?.kind !== 'ivf')
    throw new InvalidOptionError('spatialIndex', typeof spatialIndex, 'is not a spatial index')
  return store.put(encodeSpatialIndex(spatialIndex), { codec: DAG_CBOR_CODEC, signal: options?.signal })
}

/**
 * Load a spatial index by CID. A CID of something else is a `WrongObjectKindError`; a
 * missing object is `@dreamdb/cas`'s `ObjectNotFoundError`.
 */
export async function loadSpatialIndex(
  store: ObjectStore,
  cid: CID,
  options?: AbortOptions,
): Promise<SpatialIndex> {
  checkCid(cid, SPATIAL_INDEX_FORMAT)
  const raw = await store.get(cid, { signal: options?.signal })
  const value = decodeSpatialIndex(raw, cid.toString())
  digests.set(value, cid.multihash.digest)
  return value
}

/** Store a compressor; returns its CID (DAG-CBOR). */
export async function saveCompressor(
  store: ObjectStore,
  compressor: VectorCompressor,
  options?: AbortOptions,
): Promise<CID> {
  if (compressor?.kind !== 'rabitq')
    throw new InvalidOptionError('compressor', typeof compressor, 'is not a vector compressor')
  return store.put(encodeCompressor(compressor), { codec: DAG_CBOR_CODEC, signal: options?.signal })
}

/** Load a compressor by CID (see `loadSpatialIndex` for the errors). */
export async function loadCompressor(
  store: ObjectStore,
  cid: CID,
  options?: AbortOptions,
): Promise<VectorCompressor> {
  checkCid(cid, COMPRESSOR_FORMAT)
  const raw = await store.get(cid, { signal: options?.signal })
  const value = decodeCompressor(raw, cid.toString())
  digests.set(value, cid.multihash.digest)
  return value
}
