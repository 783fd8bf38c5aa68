/**
 * @packageDocumentation
 *
 * The conformance suite of `@dreamdb/cas`: every backend runs exactly these tests, so
 * that a folder, memory and a real S3 server behave the same way.
 *
 * @example
 * ```ts
 * casConformanceTests({ name: 'memory', open: async () => ({ store, url, corrupt, cleanup }) })
 * ```
 */
import { type ChildProcess, execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import type { Store } from '@dreamdb/cas'
import { CID } from 'multiformats/cid'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { nodeArgsFor } from './processes.js'

export {
  type FaultProxy,
  type FaultProxyOptions,
  type ProxiedRequest,
  s3ClientFor,
  startFaultProxy,
} from './fault-proxy.js'
export { adminClient, freshBucket, minioEndpoint, type PrivateMinio, startMinio } from './minio.js'
export { nodeArgsFor, packageEntry } from './processes.js'
export { type RawLocation, snapshotStore } from './store-snapshot.js'

export interface OpenedStore {
  store: Store
  /** The URL another process can open the same store with (not needed for memory). */
  url: string
  /** Overwrite the stored bytes of `cid` behind the store's back. */
  corrupt(cid: CID, bytes: Uint8Array): Promise<void>
  cleanup(): Promise<void>
}

export interface CasHarness {
  name: string
  /** A fresh, empty store. */
  open(): Promise<OpenedStore>
  /**
   * For backends another process can reach: an absolute path to a module exporting
   * `openStore` (a build, or sources that the worker then loads through tsx; see
   * `packageEntry`), used by the multi-process compare-and-swap test.
   */
  openStoreModule?: string
}

const encode = (text: string): Uint8Array => new TextEncoder().encode(text)
const decode = (bytes: Uint8Array): string => new TextDecoder().decode(bytes)

async function collect<T>(source: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of source) out.push(item)
  return out
}

async function* chunked(bytes: Uint8Array, size: number): AsyncGenerator<Uint8Array> {
  for (let offset = 0; offset < bytes.byteLength; offset += size) yield bytes.subarray(offset, offset + size)
}

/** The error a promise rejects with; fails the test when it resolves. */
export async function rejection(promise: Promise<unknown>): Promise<Error & Record<string, unknown>> {
  try {
    await promise
  } catch (error) {
    return error as Error & Record<string, unknown>
  }
  throw new Error('expected a rejection, but the promise resolved')
}

function aborted(): AbortSignal {
  const controller = new AbortController()
  controller.abort()
  return controller.signal
}

export function casConformanceTests(harness: CasHarness): void {
  describe(`@dreamdb/cas conformance: ${harness.name}`, () => {
    let opened: OpenedStore
    let store: Store

    beforeEach(async () => {
      opened = await harness.open()
      store = opened.store
    })
    afterEach(async () => {
      await store.close()
      await opened.cleanup()
    })

    describe('objects', () => {
      it('returns the sha2-256 CIDv1 of the bytes and reads them back', async () => {
        const bytes = encode('hello dreamdb')
        const cid = await store.put(bytes)
        const expected = CID.createV1(0x55, await sha256.digest(bytes))
        expect(cid.toString()).toBe(expected.toString())
        expect(decode(await store.get(cid))).toBe('hello dreamdb')
        expect(await store.has(cid)).toBe(true)
        expect(await store.size(cid)).toBe(bytes.byteLength)
      })

      it('stores an empty object', async () => {
        const cid = await store.put(new Uint8Array(0))
        expect((await store.get(cid)).byteLength).toBe(0)
      })

      it('keys by digest: the same bytes under another codec are the same object', async () => {
        const bytes = encode('{"a":1}')
        const raw = await store.put(bytes)
        const events: unknown[] = []
        const cbor = await store.put(bytes, { codec: 0x71, onProgress: (e) => events.push(e) })
        expect(cbor.code).toBe(0x71)
        expect(cbor.multihash.bytes).toEqual(raw.multihash.bytes)
        expect(events).toMatchObject([{ type: 'dreamdb:cas:put', stored: false }])
        expect(decode(await store.get(cbor))).toBe('{"a":1}')
      })

      it('dedups: putting stored bytes again writes nothing', async () => {
        const bytes = randomBytes(4096)
        const events: { stored: boolean }[] = []
        const onProgress = (e: { type: string; stored?: boolean }): void => {
          if (e.type === 'dreamdb:cas:put') events.push({ stored: e.stored === true })
        }
        const first = await store.put(bytes, { onProgress })
        const second = await store.put(new Uint8Array(bytes), { onProgress })
        const streamed = await store.put(chunked(bytes, 1000), { onProgress })
        expect(second.equals(first)).toBe(true)
        expect(streamed.equals(first)).toBe(true)
        expect(events).toEqual([{ stored: true }, { stored: false }, { stored: false }])
        expect((await collect(store.list())).length).toBe(1)
      })

      it('copies: mutating the caller buffer (Uint8Array or Buffer) or a returned one changes nothing', async () => {
        for (const bytes of [encode('immutable'), Buffer.from('immutable!')]) {
          const text = decode(bytes)
          const cid = await store.put(bytes)
          bytes[0] = 0x49
          const read = await store.get(cid)
          expect(decode(read)).toBe(text)
          read[0] = 0x49
          expect(decode(await store.get(cid))).toBe(text)
          for await (const chunk of store.stream(cid)) chunk.fill(0)
          expect(decode(await store.get(cid))).toBe(text)
        }
      })

      it('reports a missing object as ObjectNotFoundError naming the CID', async () => {
        const cid = CID.createV1(0x55, await sha256.digest(encode('never stored')))
        for (const attempt of [
          () => store.get(cid),
          () => store.getRange(cid, { offset: 0, length: 1 }),
          () => collect(store.stream(cid)),
        ]) {
          const error = await rejection(attempt())
          expect(error.code).toBe('ERR_CAS_NOT_FOUND')
          expect(error.message).toContain(cid.toString())
        }
        expect(await store.has(cid)).toBe(false)
        expect(await store.size(cid)).toBeUndefined()
      })

      it('rejects a CID whose hash is not sha2-256', async () => {
        const cid = CID.createV1(0x55, {
          code: 0x13,
          size: 64,
          digest: new Uint8Array(64),
          bytes: new Uint8Array([0x13, 64, ...new Uint8Array(64)]),
        })
        const error = await rejection(store.get(cid))
        expect(error.code).toBe('ERR_CAS_INVALID_CID')
      })
    })

    describe('verify on read', () => {
      it('get, getMany and stream fail with ObjectIntegrityError on corrupted bytes', async () => {
        const cid = await store.put(encode('the real bytes'))
        await opened.corrupt(cid, encode('the evil bytes'))
        for (const attempt of [
          () => store.get(cid),
          () => collect(store.getMany([cid])),
          () => collect(store.stream(cid)),
        ]) {
          const error = await rejection(attempt())
          expect(error.code).toBe('ERR_CAS_INTEGRITY')
          expect(error.name).toBe('ObjectIntegrityError')
          expect(error.message).toContain(cid.toString())
          expect(error.expectedDigest).toBe(Buffer.from(cid.multihash.digest).toString('hex'))
        }
      })

      it('detects truncation as well as substitution', async () => {
        const cid = await store.put(encode('0123456789'))
        await opened.corrupt(cid, encode('012345678'))
        expect((await rejection(store.get(cid))).code).toBe('ERR_CAS_INTEGRITY')
      })

      it('a large corrupted object fails get (hashed off-thread) and ends a streamed read', async () => {
        const bytes = randomBytes(9 << 20)
        const cid = await store.put(bytes)
        expect(Buffer.from(await store.get(cid)).equals(bytes)).toBe(true)
        const evil = Buffer.from(bytes)
        evil[evil.length - 1] = evil[evil.length - 1]! ^ 0xff
        await opened.corrupt(cid, evil)
        expect((await rejection(store.get(cid))).code).toBe('ERR_CAS_INTEGRITY')
        let received = 0
        const error = await rejection(
          (async () => {
            for await (const chunk of store.stream(cid)) received += chunk.byteLength
          })(),
        )
        expect(error.code).toBe('ERR_CAS_INTEGRITY')
        // The final chunk is held back until the digest is known.
        expect(received).toBeLessThan(bytes.byteLength)
      })
    })

    describe('healing', () => {
      type PutEvent = { stored: boolean; repaired: boolean }
      const putEvents = (): { events: PutEvent[]; onProgress: (e: unknown) => void } => {
        const events: PutEvent[] = []
        return {
          events,
          onProgress: (e) => {
            const event = e as { type: string; stored?: boolean; repaired?: boolean }
            if (event.type === 'dreamdb:cas:put')
              events.push({ stored: event.stored === true, repaired: event.repaired === true })
          },
        }
      }
      const flipped = (bytes: Uint8Array, at: number): Uint8Array => {
        const evil = new Uint8Array(bytes)
        evil[at] = evil[at]! ^ 0x01
        return evil
      }

      it('a put of bytes whose small stored copy is damaged (same size) replaces it', async () => {
        const bytes = randomBytes(4096)
        const cid = await store.put(bytes)
        await opened.corrupt(cid, flipped(bytes, 100))
        const { events, onProgress } = putEvents()
        expect((await store.put(new Uint8Array(bytes), { onProgress })).toString()).toBe(cid.toString())
        expect(Buffer.from(await store.get(cid)).equals(bytes)).toBe(true)
        // Sound again: the next put writes nothing.
        await store.put(new Uint8Array(bytes), { onProgress })
        expect(events).toEqual([
          { stored: true, repaired: true },
          { stored: false, repaired: false },
        ])
      })

      it('a large stored copy of the wrong size is replaced by a put, one-shot or streamed', async () => {
        const bytes = randomBytes((1 << 20) + 3)
        const cid = await store.put(bytes)
        const { events, onProgress } = putEvents()
        await opened.corrupt(cid, bytes.subarray(0, bytes.byteLength - 1))
        await store.put(new Uint8Array(bytes), { onProgress })
        expect(Buffer.from(await store.get(cid)).equals(bytes)).toBe(true)
        await opened.corrupt(cid, Buffer.concat([bytes, Buffer.from('tail')]))
        await store.put(chunked(bytes, 100_000), { onProgress })
        expect(Buffer.from(await store.get(cid)).equals(bytes)).toBe(true)
        expect(events).toEqual([
          { stored: true, repaired: true },
          { stored: true, repaired: true },
        ])
      })

      it('a large copy damaged in place is replaced by a put once a read has found it damaged', async () => {
        const bytes = randomBytes(256 << 10)
        const cid = await store.put(bytes)
        await opened.corrupt(cid, flipped(bytes, 200_000))
        expect((await rejection(store.get(cid))).code).toBe('ERR_CAS_INTEGRITY')
        const { events, onProgress } = putEvents()
        await store.put(new Uint8Array(bytes), { onProgress })
        expect(events).toEqual([{ stored: true, repaired: true }])
        expect(Buffer.from(await store.get(cid)).equals(bytes)).toBe(true)
      })
    })

    describe('ranged reads', () => {
      it('reads exact byte ranges, including the last byte and an empty range', async () => {
        const bytes = randomBytes(10_000)
        const cid = await store.put(bytes)
        expect(Buffer.from(await store.getRange(cid, { offset: 0, length: 1 }))).toEqual(bytes.subarray(0, 1))
        expect(Buffer.from(await store.getRange(cid, { offset: 1234, length: 4321 }))).toEqual(
          bytes.subarray(1234, 5555),
        )
        expect(Buffer.from(await store.getRange(cid, { offset: 9999, length: 1 }))).toEqual(
          bytes.subarray(9999),
        )
        expect((await store.getRange(cid, { offset: 500, length: 0 })).byteLength).toBe(0)
      })

      it('rejects a range past the end with InvalidRangeError giving the size', async () => {
        const cid = await store.put(randomBytes(100))
        for (const range of [
          { offset: 90, length: 11 },
          { offset: 100, length: 1 },
          { offset: -1, length: 1 },
        ]) {
          const error = await rejection(store.getRange(cid, range))
          expect(error.code).toBe('ERR_CAS_INVALID_RANGE')
        }
        const error = await rejection(store.getRange(cid, { offset: 100, length: 1 }))
        expect(error.size).toBe(100)
      })

      it('verifies a range against a caller-supplied digest', async () => {
        const bytes = randomBytes(5000)
        const cid = await store.put(bytes)
        const digest = createHash('sha256').update(bytes.subarray(100, 300)).digest()
        const good = await store.getRange(cid, { offset: 100, length: 200, sha256: digest })
        expect(Buffer.from(good)).toEqual(bytes.subarray(100, 300))
        const error = await rejection(store.getRange(cid, { offset: 101, length: 200, sha256: digest }))
        expect(error.code).toBe('ERR_CAS_INTEGRITY')
      })
    })

    describe('abort', () => {
      it('every call rejects with the abort reason when the signal is already aborted', async () => {
        const cid = await store.put(encode('x'))
        const signal = aborted()
        const calls: (() => Promise<unknown>)[] = [
          () => store.put(encode('y'), { signal }),
          () => store.put(chunked(encode('streamed'), 2), { signal }),
          () => store.get(cid, { signal }),
          () => store.getRange(cid, { offset: 0, length: 1, signal }),
          () => store.has(cid, { signal }),
          () => collect(store.stream(cid, { signal })),
          () => collect(store.getMany([cid], { signal })),
          () => collect(store.putMany([encode('z')], { signal })),
          () => collect(store.list({ signal })),
          () => store.readRef('a', { signal }),
          () => store.createRef('a', encode('1'), { signal }),
          () => collect(store.listRefs('', { signal })),
        ]
        for (const call of calls) expect((await rejection(call())).name).toBe('AbortError')
        expect(await store.readRef('a')).toBeUndefined()
      })

      it('aborting a streamed put midway stores nothing', async () => {
        const controller = new AbortController()
        async function* source(): AsyncGenerator<Uint8Array> {
          yield randomBytes(1 << 20)
          controller.abort()
          yield randomBytes(1 << 20)
        }
        const error = await rejection(store.put(source(), { signal: controller.signal }))
        expect(error.name).toBe('AbortError')
        expect(await collect(store.list())).toEqual([])
      })

      it('aborting a streamed read stops it', async () => {
        const cid = await store.put(randomBytes(4 << 20))
        const controller = new AbortController()
        const error = await rejection(
          (async () => {
            for await (const _ of store.stream(cid, { signal: controller.signal })) controller.abort()
          })(),
        )
        expect(error.name).toBe('AbortError')
      })
    })

    describe('listing', () => {
      it('lists every object with its size, and filters by digest prefix', async () => {
        const cids = await collect(store.putMany(['a', 'bb', 'ccc'].map(encode)))
        const listed = await collect(store.list())
        expect(listed.map((o) => o.cid.toString()).sort()).toEqual(cids.map((c) => c.toString()).sort())
        expect(listed.map((o) => o.size).sort()).toEqual([1, 2, 3])
        const hex = Buffer.from(cids[1]!.multihash.digest).toString('hex')
        for (const prefix of [hex.slice(0, 1), hex.slice(0, 2), hex.slice(0, 5), hex]) {
          const matched = await collect(store.list({ digestPrefix: prefix }))
          expect(matched.map((o) => o.cid.toString())).toContain(cids[1]!.toString())
          for (const o of matched)
            expect(Buffer.from(o.cid.multihash.digest).toString('hex').startsWith(prefix)).toBe(true)
        }
      })
    })

    describe('large objects', () => {
      it('streams a 24 MiB object in and out with the same CID as a one-shot put', async () => {
        const bytes = randomBytes(24 << 20)
        const streamed = await store.put(chunked(bytes, 1 << 20))
        expect(streamed.toString()).toBe(CID.createV1(0x55, await sha256.digest(bytes)).toString())
        expect(await store.size(streamed)).toBe(bytes.byteLength)
        const hash = createHash('sha256')
        let total = 0
        for await (const chunk of store.stream(streamed)) {
          hash.update(chunk)
          total += chunk.byteLength
        }
        expect(total).toBe(bytes.byteLength)
        expect(hash.digest()).toEqual(Buffer.from(streamed.multihash.digest))
        expect(Buffer.from(await store.get(streamed)).equals(bytes)).toBe(true)
        expect(Buffer.from(await store.getRange(streamed, { offset: (20 << 20) - 3, length: 6 }))).toEqual(
          bytes.subarray((20 << 20) - 3, (20 << 20) + 3),
        )
        // Staging leaves nothing behind but the object itself.
        expect((await collect(store.list())).length).toBe(1)
      })
    })

    describe('parallel writers', () => {
      it('32 concurrent puts of the same bytes store one object, all with one CID', async () => {
        const bytes = randomBytes(64 << 10)
        const cids = await Promise.all(Array.from({ length: 32 }, () => store.put(new Uint8Array(bytes))))
        expect(new Set(cids.map(String)).size).toBe(1)
        expect((await collect(store.list())).length).toBe(1)
        expect(Buffer.from(await store.get(cids[0]!)).equals(bytes)).toBe(true)
      })

      it('putMany and getMany keep input order with bounded concurrency', async () => {
        const inputs = Array.from({ length: 50 }, (_, i) => encode(`record ${i}`))
        const cids = await collect(store.putMany(inputs, { concurrency: 4 }))
        expect(cids.length).toBe(50)
        const out = await collect(store.getMany(cids, { concurrency: 7 }))
        expect(out.map((o) => decode(o.bytes))).toEqual(inputs.map(decode))
        expect(out.every((o, i) => o.cid.equals(cids[i]))).toBe(true)
      })
    })

    describe('refs', () => {
      it('creates if absent, updates if unchanged, and counts generations', async () => {
        const created = await store.createRef('branches/main', encode('v1'))
        expect(created.generation).toBe(1)
        const read = await store.readRef('branches/main')
        expect(read && decode(read.value)).toBe('v1')
        expect(read?.version).toBe(created.version)
        const updated = await store.updateRef('branches/main', encode('v2'), created.version)
        expect(updated.generation).toBe(2)
        expect(updated.version).not.toBe(created.version)
        expect(decode((await store.readRef('branches/main'))!.value)).toBe('v2')
      })

      it('a write of the same value still changes the version (no ABA)', async () => {
        const a = await store.createRef('r', encode('same'))
        const b = await store.updateRef('r', encode('same'), a.version)
        expect(b.version).not.toBe(a.version)
        const error = await rejection(store.updateRef('r', encode('same'), a.version))
        expect(error.code).toBe('ERR_CAS_REF_CONFLICT')
      })

      it('create on an existing ref is a RefConflictError naming the ref', async () => {
        const first = await store.createRef('snapshots/v1', encode('m1'))
        const error = await rejection(store.createRef('snapshots/v1', encode('m2')))
        expect(error.code).toBe('ERR_CAS_REF_CONFLICT')
        expect(error.refName).toBe('snapshots/v1')
        expect(error.expectedVersion).toBeNull()
        expect(error.actualVersion).toBe(first.version)
        expect(decode((await store.readRef('snapshots/v1'))!.value)).toBe('m1')
      })

      it('a stale update is a RefConflictError with both versions and changes nothing', async () => {
        const v1 = await store.createRef('b', encode('1'))
        const v2 = await store.updateRef('b', encode('2'), v1.version)
        const error = await rejection(store.updateRef('b', encode('3'), v1.version))
        expect(error.code).toBe('ERR_CAS_REF_CONFLICT')
        expect(error.expectedVersion).toBe(v1.version)
        expect(error.actualVersion).toBe(v2.version)
        expect(decode((await store.readRef('b'))!.value)).toBe('2')
      })

      it('updateRef given the entry read: writes the next generation; a stale or deleted entry still fails', async () => {
        const v1 = await store.createRef('e', encode('1'))
        const read = (await store.readRef('e'))!
        const v2 = await store.updateRef('e', encode('2'), read)
        expect(v2.generation).toBe(2)
        expect(decode((await store.readRef('e'))!.value)).toBe('2')
        const stale = await rejection(store.updateRef('e', encode('3'), v1))
        expect(stale.code).toBe('ERR_CAS_REF_CONFLICT')
        expect(stale.expectedVersion).toBe(v1.version)
        expect(stale.actualVersion).toBe(v2.version)
        await store.deleteRef('e', v2.version)
        expect((await rejection(store.updateRef('e', encode('4'), v2))).code).toBe('ERR_CAS_REF_NOT_FOUND')
        expect(await store.readRef('e')).toBeUndefined()
      })

      it('updating or deleting a missing ref is RefNotFoundError', async () => {
        expect((await rejection(store.updateRef('nope', encode('x'), 'v'))).code).toBe(
          'ERR_CAS_REF_NOT_FOUND',
        )
        expect((await rejection(store.deleteRef('nope', 'v'))).code).toBe('ERR_CAS_REF_NOT_FOUND')
        expect(await store.readRef('nope')).toBeUndefined()
      })

      it('deletes only at the expected version', async () => {
        const v1 = await store.createRef('tmp/x', encode('1'))
        const v2 = await store.updateRef('tmp/x', encode('2'), v1.version)
        expect((await rejection(store.deleteRef('tmp/x', v1.version))).code).toBe('ERR_CAS_REF_CONFLICT')
        await store.deleteRef('tmp/x', v2.version)
        expect(await store.readRef('tmp/x')).toBeUndefined()
        const again = await store.createRef('tmp/x', encode('3'))
        expect(again.generation).toBe(1)
      })

      it('lists refs by prefix in order; a ref and a ref below it coexist', async () => {
        for (const name of [
          'branches/main',
          'branches/sweep/lr0.1',
          'branches/sweep',
          'tags/prod',
          'branchesX',
        ]) {
          await store.createRef(name, encode(name))
        }
        expect(await collect(store.listRefs('branches/'))).toEqual([
          'branches/main',
          'branches/sweep',
          'branches/sweep/lr0.1',
        ])
        expect(await collect(store.listRefs('branches/sw'))).toEqual([
          'branches/sweep',
          'branches/sweep/lr0.1',
        ])
        expect((await collect(store.listRefs())).length).toBe(5)
        expect(decode((await store.readRef('branches/sweep'))!.value)).toBe('branches/sweep')
      })

      it('rejects invalid ref names before writing anything', async () => {
        for (const name of [
          '',
          '/a',
          'a/',
          'a//b',
          '../x',
          'a/..',
          '.hidden',
          'x.lock',
          'x.ref',
          'sp ace',
          'é',
          'a'.repeat(256),
        ]) {
          const error = await rejection(store.createRef(name, encode('x')))
          expect(error.code, name).toBe('ERR_CAS_INVALID_REF_NAME')
          expect(error.message).toContain('Invalid ref name')
        }
        expect(await collect(store.listRefs())).toEqual([])
      })

      it('8 concurrent compare-and-swap loops in one process lose no increment', async () => {
        await store.createRef('counter', encode('0'))
        const increment = async (): Promise<number> => {
          let conflicts = 0
          for (;;) {
            const current = (await store.readRef('counter'))!
            try {
              await store.updateRef(
                'counter',
                encode(String(Number(decode(current.value)) + 1)),
                current.version,
              )
              return conflicts
            } catch (error) {
              if ((error as { code?: string }).code !== 'ERR_CAS_REF_CONFLICT') throw error
              conflicts++
            }
          }
        }
        // Every loop races every other on each increment (the cost grows with the square of
        // the loops); the torture suite's concurrent-cas scenario runs more, in processes.
        const writers = Array.from({ length: 8 }, async () => {
          for (let i = 0; i < 5; i++) await increment()
        })
        await Promise.all(writers)
        const final = (await store.readRef('counter'))!
        expect(decode(final.value)).toBe('40')
        expect(final.generation).toBe(41)
      })

      // Only for stores another process can open (not memory://).
      if (harness.openStoreModule === undefined) return
      // 4 processes x 10: enough for lost races between processes, which the workers retry
      // (torture's concurrent-cas and sigkill-cas run 8 x 40 and SIGKILL writers).
      it('4 processes x 10 compare-and-swap increments end at exactly 40', async () => {
        await store.createRef('counter', encode('0'))
        const worker = fileURLToPath(new URL('./ref-counter-worker.mjs', import.meta.url))
        const module = harness.openStoreModule!
        const children: ChildProcess[] = []
        const ready: Promise<void>[] = []
        const runs = Array.from(
          { length: 4 },
          () =>
            new Promise<{ conflicts: number }>((resolve, reject) => {
              const child = execFile(
                process.execPath,
                [...nodeArgsFor(module), worker, module, opened.url, 'counter', '10', 'wait'],
                { env: process.env, timeout: 120_000 },
                (error, stdout, stderr) => {
                  if (error) reject(new Error(`worker failed: ${error.message}\n${stderr}`))
                  else resolve(JSON.parse(stdout) as { conflicts: number })
                },
              )
              children.push(child)
              // Each worker says `ready` once its store is open and waits for a line on stdin,
              // so all of them increment at once whatever their start-up takes.
              ready.push(
                new Promise<void>((resolve) => {
                  child.stderr!.on('data', (chunk: Buffer) => {
                    if (chunk.toString().includes('ready')) resolve()
                  })
                  child.on('exit', () => resolve())
                }),
              )
            }),
        )
        await Promise.all(ready)
        for (const child of children) child.stdin!.end('go\n')
        const results = await Promise.all(runs)
        const final = (await store.readRef('counter'))!
        const conflicts = results.reduce((sum, r) => sum + r.conflicts, 0)
        console.log(
          `[${harness.name}] 4 processes x 10 CAS increments: counter=${decode(final.value)}, conflicts retried=${conflicts}`,
        )
        expect(decode(final.value)).toBe('40')
        expect(final.generation).toBe(41)
      })
    })
  })
}
