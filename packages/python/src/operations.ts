/**
 * What the bridge can be asked to do: one handler per operation of `dreamdb_dataset`, each
 * a direct call into `@dreamdb/dataset` or `@dreamdb/manifest`. Datasets stay open in the
 * bridge under a numeric handle that the Python object holds.
 */
import { openStore, parseCid, type Store } from '@dreamdb/cas'
import {
  agreementMatrix,
  type BatchStream,
  compareRefs,
  Dataset,
  type IterOptions,
  type ResumeState,
  type TrainCodecOptions,
  trainEmbeddingCodec,
} from '@dreamdb/dataset'
import { type Field, type FieldInput, inspect, Repository } from '@dreamdb/manifest'
import {
  type Data,
  RecordBatchStreamWriter,
  type Schema,
  type Table,
  tableFromArrays,
  tableFromIPC,
  tableToIPC,
} from 'apache-arrow'
import { type RecordsShape, recordsOf, samplesOf } from './convert.js'
import { BadRequestError } from './errors.js'

/** A request's arguments, as Python sent them (JSON). */
export type Args = Record<string, unknown>

/** The outcome of an operation: JSON, and optionally an Arrow table sent after it. */
export interface Outcome {
  json: unknown
  table?: Table
}

/** A stream of record batches that Python pulls with credits. */
export interface Stream {
  state: () => ResumeState
  /** Each batch as one IPC stream, in pieces written back to back (never joined: a copy). */
  batches: AsyncIterator<Uint8Array[]>
}

/**
 * Message bytes a stream's batches share: its schema, and each dictionary as long as the
 * iteration keeps the same one (the gatherer's shared dictionary changes only when a new
 * value appears). Encoding them again for every batch cost as much as the batch's own header.
 */
interface EncodedParts {
  /** By the fields' nullability, which follows each batch's nulls (the types do not change). */
  schemas: Map<string, Uint8Array[]>
  dictionaries: Map<number, { data: unknown; isDelta: boolean; pieces: Uint8Array[] }>
}

/**
 * A stream writer that keeps the pieces it writes (message headers, padding, and the batch's
 * own buffers, not copied) so the frame can go out with one writev: `toUint8Array(true)`
 * would join them, a copy of every batch that cost about as much as encoding it. With
 * `parts`, the schema and unchanged dictionaries are the bytes encoded for an earlier batch.
 */
class PiecesWriter extends RecordBatchStreamWriter {
  readonly pieces: Uint8Array[] = []
  readonly #parts: EncodedParts | undefined

  constructor(parts?: EncodedParts) {
    super()
    this.#parts = parts
  }

  protected override _write(chunk: unknown): this {
    const before = this._position
    super._write(chunk as never)
    if (this._position > before && ArrayBuffer.isView(chunk))
      this.pieces.push(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength))
    return this
  }

  #replay(saved: Uint8Array[]): this {
    for (const piece of saved) {
      this.pieces.push(piece)
      this._position += piece.byteLength
    }
    return this
  }

  protected override _writeSchema(schema: Schema): this {
    const parts = this.#parts
    if (parts === undefined) return super._writeSchema(schema)
    const key = schema.fields.map((f) => (f.nullable ? 1 : 0)).join('')
    const seen = parts.schemas.get(key)
    if (seen !== undefined) return this.#replay(seen)
    const from = this.pieces.length
    super._writeSchema(schema)
    parts.schemas.set(key, this.pieces.slice(from))
    return this
  }

  protected override _writeDictionaryBatch(dictionary: Data, id: number, isDelta = false): this {
    const parts = this.#parts
    if (parts === undefined) return super._writeDictionaryBatch(dictionary, id, isDelta)
    const seen = parts.dictionaries.get(id)
    if (seen !== undefined && seen.data === dictionary && seen.isDelta === isDelta)
      return this.#replay(seen.pieces)
    const from = this.pieces.length
    super._writeDictionaryBatch(dictionary, id, isDelta)
    parts.dictionaries.set(id, { data: dictionary, isDelta, pieces: this.pieces.slice(from) })
    return this
  }
}

export class Operations {
  readonly #stores = new Map<string, Promise<Store>>()
  readonly #datasets = new Map<number, Dataset>()
  readonly #readThreads: boolean | undefined
  #nextHandle = 1

  /**
   * `readThreads: false` keeps reading and hashing on the bridge's own thread: a DataLoader
   * worker's bridge is one of several processes sharing the cores already, and handing each
   * object to a thread and back only adds work there (design/0007).
   */
  constructor(options: { readThreads?: boolean } = {}) {
    this.#readThreads = options.readThreads
  }

  /** One open store per backend URL for the life of the bridge. */
  #store(backend: unknown, createBucket = false): Promise<Store> {
    if (typeof backend !== 'string')
      throw new BadRequestError('open', `backend must be a string, got ${typeof backend}`)
    let store = this.#stores.get(backend)
    if (store === undefined) {
      store = openStore(backend, {
        createBucket,
        ...(this.#readThreads !== undefined ? { readThreads: this.#readThreads } : {}),
      })
      store.catch(() => this.#stores.delete(backend))
      this.#stores.set(backend, store)
    }
    return store
  }

  #dataset(args: Args): Dataset {
    const ds = this.#datasets.get(args.handle as number)
    if (ds === undefined)
      throw new BadRequestError('dataset', `no open dataset with handle ${String(args.handle)}`)
    return ds
  }

  #describe(ds: Dataset): unknown {
    const handle = this.#nextHandle++
    this.#datasets.set(handle, ds)
    return { handle, ...this.#info(ds) }
  }

  #info(ds: Dataset): Record<string, unknown> {
    const { manifest } = ds
    return {
      ref: ds.ref,
      manifest: ds.currentManifest(),
      fields: manifest.schema.fields.map(plainField),
      layers: manifest.layers.map((l) => ({
        name: l.name,
        parent: l.parent,
        field: plainField(l.field),
        records: l.records,
      })),
      records: manifest.stats.records,
    }
  }

  /** Operations that answer once. */
  async call(op: string, args: Args, data: Uint8Array, signal: AbortSignal): Promise<Outcome> {
    const withSignal = { signal }
    switch (op) {
      case 'hello':
        return { json: { pid: process.pid, node: process.versions.node } }
      case 'create': {
        const store = await this.#store(args.backend, args.createBucket === true)
        const ds = await Dataset.create(args.name as string, {
          backend: store,
          schema: args.schema as { fields: never[] },
          signal,
        })
        return { json: this.#describe(ds) }
      }
      case 'openRef':
        return {
          json: this.#describe(
            await Dataset.openRef(args.name as string, { backend: await this.#store(args.backend), signal }),
          ),
        }
      case 'openAt':
        return {
          json: this.#describe(
            await Dataset.openAt(args.at as string, { backend: await this.#store(args.backend), signal }),
          ),
        }
      case 'release':
        for (const handle of args.handles as number[]) this.#datasets.delete(handle)
        return { json: null }
      case 'describe':
        return { json: this.#info(this.#dataset(args)) }
      case 'refresh': {
        const ds = this.#dataset(args)
        await ds.refresh(withSignal)
        return { json: this.#info(ds) }
      }
      case 'snapshot':
        return { json: await this.#dataset(args).snapshot(args.label as string, withSignal) }
      case 'branch':
        return { json: this.#describe(await this.#dataset(args).branch(args.name as string, withSignal)) }
      case 'appendMany': {
        const ds = this.#dataset(args)
        const records = recordsOf(tableFromIPC(data), args as RecordsShape)
        const manifest = await ds.appendMany(records, {
          ...(args.bucketRecords != null ? { bucketRecords: args.bucketRecords as number } : {}),
          ...(args.message != null ? { message: args.message as string } : {}),
          signal,
        })
        return { json: { manifest, ...this.#info(ds) } }
      }
      case 'restore':
      case 'merge': {
        const ds = this.#dataset(args)
        const write = op === 'restore' ? ds.restore.bind(ds) : ds.merge.bind(ds)
        const manifest = await write(args.from as string, commitOptions(args, signal))
        return { json: { manifest, ...this.#info(ds) } }
      }
      case 'addFields': {
        const ds = this.#dataset(args)
        const manifest = await ds.addFields(args.fields as FieldInput[], commitOptions(args, signal))
        return { json: { manifest, ...this.#info(ds) } }
      }
      case 'dropLayer':
      case 'dropField': {
        const ds = this.#dataset(args)
        const drop = op === 'dropLayer' ? ds.dropLayer.bind(ds) : ds.dropField.bind(ds)
        const manifest = await drop(args.name as string, commitOptions(args, signal))
        return { json: { manifest, ...this.#info(ds) } }
      }
      case 'addScalarLayer': {
        const ds = this.#dataset(args)
        const samples = samplesOf(
          tableFromIPC(data),
          args as { jsonAnchors?: unknown[]; jsonValues?: unknown[] },
        )
        const manifest = await ds.addScalarLayer(
          args.name as string,
          args.parentField as string,
          args.kind as never,
          samples,
          withSignal,
        )
        return { json: { manifest, ...this.#info(ds) } }
      }
      case 'addEmbeddingLayer': {
        const ds = this.#dataset(args)
        const samples = samplesOf(
          tableFromIPC(data),
          args as { jsonAnchors?: unknown[]; jsonValues?: unknown[] },
        )
        const init = args.init as Record<string, unknown>
        const manifest = await ds.addEmbeddingLayer({ ...init, samples } as never, withSignal)
        return { json: { manifest, ...this.#info(ds) } }
      }
      case 'search': {
        const ds = this.#dataset(args)
        const query = new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4)
        const hits = await ds.search(args.field as string, query, {
          ...(args.options as object),
          signal,
        } as never)
        return {
          json: { hits: hits.anchors.length },
          table: tableFromArrays({ anchor: hits.anchors, distance: hits.distances }),
        }
      }
      case 'searchMany': {
        const ds = this.#dataset(args)
        // Rows of the shape Python checked and sent (`queries` x `dim` float32, row-major), each
        // checked against the field's dimension by the search: a flat array would be cut by
        // the field's dimension and read a wrong shape as other queries.
        const [queries, dim] = args.shape as [number, number]
        if (
          !Number.isSafeInteger(queries) ||
          !Number.isSafeInteger(dim) ||
          queries * dim * 4 !== data.byteLength
        ) {
          throw new BadRequestError(
            op,
            `shape ${JSON.stringify(args.shape)} does not match ${data.byteLength} bytes`,
          )
        }
        const flat = new Float32Array(data.buffer, data.byteOffset, queries * dim)
        const rows = Array.from({ length: queries }, (_, i) => flat.subarray(i * dim, (i + 1) * dim))
        const hits = await ds.searchMany(args.field as string, rows, {
          ...(args.options as object),
          signal,
        } as never)
        return {
          json: { counts: [...hits.counts] },
          table: tableFromArrays({ anchor: hits.anchors, distance: hits.distances }),
        }
      }
      case 'migrate': {
        const ds = this.#dataset(args)
        const manifest = await ds.migrate({ ...(args.options as object), signal } as never)
        return { json: { manifest, ...this.#info(ds) } }
      }
      case 'compact': {
        const ds = this.#dataset(args)
        const manifest = await ds.compact({ ...(args.options as object), signal } as never)
        return { json: { manifest: manifest ?? null, ...this.#info(ds) } }
      }
      case 'inspect': {
        const ds = this.#dataset(args)
        return { json: await inspect(ds.repository, ds.ref ?? parseCid(ds.currentManifest()), withSignal) }
      }
      case 'refs': {
        const repo = new Repository(await this.#store(args.backend))
        const out: unknown[] = []
        for await (const ref of repo.listRefs((args.prefix as string | undefined) ?? '', withSignal)) {
          out.push({ name: ref.name, kind: ref.kind, manifest: ref.manifest.toString() })
        }
        return { json: out }
      }
      case 'compareRefs': {
        const table = await compareRefs({
          refs: args.refs as string[],
          fields: args.fields as string[],
          backend: await this.#store(args.backend),
          signal,
        })
        return { json: { rows: table.numRows }, table }
      }
      case 'trainEmbeddingCodec': {
        const vectors = new Float32Array(data.buffer, data.byteOffset, data.byteLength / 4)
        const options = args.options as Omit<TrainCodecOptions, 'backend' | 'signal'>
        return {
          json: await trainEmbeddingCodec(vectors, {
            ...options,
            backend: await this.#store(args.backend),
            signal,
          }),
        }
      }
      case 'agreementMatrix':
        return { json: agreementMatrix(tableFromIPC(data), args.field as string, args.refs as string[]) }
      default:
        throw new BadRequestError(op, 'unknown operation')
    }
  }

  /** `iterArrowBatches`: each batch encoded as its own IPC stream, pulled by Python. */
  iterate(args: Args, signal: AbortSignal): Stream {
    const ds = this.#dataset(args)
    // Each batch is written out (into a sink, or copied for the pipe: main.ts) before the
    // next is asked for, so the iterator may reuse its read buffers (design/0005).
    const stream: BatchStream = ds.iterArrowBatches({
      ...(args.options as IterOptions),
      recycleBuffers: true,
      signal,
    })
    const source = stream[Symbol.asyncIterator]()
    // Every batch of one iteration has the same field types (the gatherer's).
    const parts: EncodedParts = { schemas: new Map(), dictionaries: new Map() }
    return {
      state: () => stream.state(),
      batches: {
        async next() {
          const next = await source.next()
          if (next.done) return { done: true, value: undefined }
          const writer = new PiecesWriter(parts)
          writer.write(next.value)
          writer.finish()
          return { done: false, value: writer.pieces }
        },
        async return() {
          await source.return?.()
          return { done: true, value: undefined }
        },
      },
    }
  }
}

/** A table as IPC stream bytes. */
export function ipcOf(table: Table): Uint8Array {
  return tableToIPC(table, 'stream')
}

function plainField(field: Field): Record<string, unknown> {
  return field.family === 'embedding'
    ? {
        ...field,
        spatialIndex: field.spatialIndex?.toString() ?? null,
        compressor: field.compressor?.toString() ?? null,
      }
    : { ...field }
}

/** A branch write's options from a request: its commit message, when it gave one. */
function commitOptions(args: Args, signal: AbortSignal): { message?: string; signal: AbortSignal } {
  return args.message !== undefined ? { message: args.message as string, signal } : { signal }
}
