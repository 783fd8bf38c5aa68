/**
 * The commit's side of an unknown outcome, with a store wrapper that fails ref writes on
 * purpose (the MinIO proxy test covers the real thing): a write that did not land is tried
 * again; one whose outcome cannot be learnt is ERR_MANIFEST_COMMIT_UNKNOWN; one that the
 * store says was never sent is passed on unchanged.
 */
import { openStore, type Store } from '@dreamdb/cas'
import { describe, expect, it } from 'vitest'
import { log, Repository } from '../src/index.js'
import { appendRecords, SCHEMA } from './helpers/records.js'

type Fault = 'lost-before' | 'lost-after-then-unreadable' | 'never-sent'

/** A store whose next write of `ref` fails as `fault` says. */
async function faulty(fault: Fault, ref = 'corpus') {
  const inner = await openStore('memory://')
  let armed = false
  let readsToFail = 0
  const storageError = () =>
    Object.assign(new Error('socket hang up'), { code: 'ERR_CAS_STORAGE', name: 'StorageError' })
  const store = new Proxy(inner, {
    get(target, key, receiver) {
      if (key === 'updateRef') {
        return async (name: string, value: Uint8Array, version: string, options?: object) => {
          if (!armed || name !== ref) return target.updateRef(name, value, version, options)
          armed = false
          if (fault === 'lost-before') throw storageError()
          if (fault === 'never-sent') {
            throw Object.assign(new Error('connect ECONNREFUSED'), {
              code: 'ERR_CAS_UNREACHABLE',
              requestSent: false,
            })
          }
          await target.updateRef(name, value, version, options)
          readsToFail = 1
          throw storageError()
        }
      }
      if (key === 'readRef') {
        return async (name: string, options?: object) => {
          if (readsToFail > 0 && name === ref) {
            readsToFail--
            throw storageError()
          }
          return target.readRef(name, options)
        }
      }
      const value = Reflect.get(target, key, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    },
  }) as Store
  const repo = new Repository(store)
  await repo.createDataset(ref, { schema: SCHEMA })
  await appendRecords(repo, ref, 2)
  armed = true
  return repo
}

describe('a ref write without an answer', () => {
  it('that did not land: the branch has not moved, so the change is tried again and lands once', async () => {
    const repo = await faulty('lost-before')
    const result = await appendRecords(repo, 'corpus', 3)
    expect(result.attempts).toBe(2)
    const history = await log(repo, 'corpus')
    expect(history.map((e) => e.change.kind)).toEqual(['append', 'append', 'create'])
    expect(history[0]!.manifest).toBe(result.manifest.toString())
  })

  it('that landed, when reading the branch back fails too: ERR_MANIFEST_COMMIT_UNKNOWN naming the manifest', async () => {
    const repo = await faulty('lost-after-then-unreadable')
    let error: (Error & Record<string, unknown>) | undefined
    try {
      await appendRecords(repo, 'corpus', 3)
    } catch (caught) {
      error = caught as Error & Record<string, unknown>
    }
    expect(error?.code).toBe('ERR_MANIFEST_COMMIT_UNKNOWN')
    expect((error?.cause as { code?: string } | undefined)?.code).toBe('ERR_CAS_STORAGE')
    // It had landed: the manifest the error names is the head.
    const head = await repo.readRef('corpus')
    expect(head!.manifest.toString()).toBe(error?.manifest)
  })

  it('that was never sent: the store error passes unchanged, nothing landed', async () => {
    const repo = await faulty('never-sent')
    let code: string | undefined
    try {
      await appendRecords(repo, 'corpus', 3)
    } catch (caught) {
      code = (caught as { code?: string }).code
    }
    expect(code).toBe('ERR_CAS_UNREACHABLE')
    expect((await log(repo, 'corpus')).length).toBe(2)
  })
})
