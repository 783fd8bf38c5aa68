import { randomBytes } from 'node:crypto'
import { close, createReadStream, fstat, open as openFd, read } from 'node:fs'
import {
  type FileHandle,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  stat,
  unlink,
  utimes,
} from 'node:fs/promises'
import { availableParallelism, hostname } from 'node:os'
import { dirname, join } from 'node:path'
import { sleep } from '../concurrency.js'
import { sha256, toHex } from '../digest.js'
import { RefLockedError } from '../errors.js'
import type { ReadSink } from '../hashing.js'
import { STAGING } from '../layout.js'
import type { Backend, ConditionalWriteResult, StagedObject, VersionedBlob } from './backend.js'
import { NotFoundSignal } from './backend.js'
import { type ReadThreads, sharedReadThreads, THREAD_READ_MIN_BYTES } from './read-threads.js'

/** Reads are split into chunks so hashing one chunk overlaps reading the next. */
const READ_CHUNK = 4 << 20
/** A healthy writer holds a ref lock for milliseconds; older locks are from a crashed one. */
const STALE_LOCK_MS = 30_000
/** How long a writer waits for a live lock before giving up: past the stale age, so a lock
 *  abandoned elsewhere is broken rather than reported. */
const LOCK_WAIT_MS = 45_000
const LOCK_SUFFIX = '.lock'
/** Marks a ref body being written next to its ref; never listed, never read. */
const TEMP_INFIX = '.tmp-'

/** Whether a process of this host is still running. */
function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: it runs, under another user.
    return isErrno(error, 'EPERM')
  }
}

function isErrno(error: unknown, ...codes: string[]): boolean {
  return (
    typeof error === 'object' && error !== null && codes.includes((error as NodeJS.ErrnoException).code ?? '')
  )
}

// The hot read path uses the callback API on plain descriptors: the same system calls as
// fs/promises' FileHandle at about half the main-thread cost per call (measured by
// bench/cas.ts on small objects).
const fd = {
  open: (path: string) =>
    new Promise<number>((resolve, reject) => openFd(path, 'r', (e, n) => (e ? reject(e) : resolve(n)))),
  size: (n: number) =>
    new Promise<number>((resolve, reject) => fstat(n, (e, s) => (e ? reject(e) : resolve(s.size)))),
  read: (n: number, into: Buffer, offset: number, length: number, position: number) =>
    new Promise<number>((resolve, reject) =>
      read(n, into, offset, length, position, (e, bytesRead) => (e ? reject(e) : resolve(bytesRead))),
    ),
  close: (n: number) => new Promise<void>((resolve, reject) => close(n, (e) => (e ? reject(e) : resolve()))),
}

async function fsyncDirectory(path: string): Promise<void> {
  const handle = await open(path, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/**
 * The embedded default: a folder. Objects are published with temp file, fsync, `link`
 * (which fails with EEXIST instead of replacing) and a directory fsync, so a crash never
 * leaves a partial object under its final name. Refs move under a git-style `O_EXCL`
 * lockfile: the new body is written and fsynced into `<ref>.lock`, the current body is
 * compared with the expected version, then the lock is renamed over the ref and the
 * directory fsynced.
 *
 * @internal
 */
export class FsBackend implements Backend {
  readonly description: string
  readonly #root: string
  /**
   * Ref operations of this process, chained per ref: writers of one process queue here
   * instead of meeting at the lock file, so two of them can never both judge the same
   * abandoned lock and break each other's fresh one.
   */
  readonly #refQueues = new Map<string, Promise<unknown>>()

  /** Where large objects are read and hashed; `undefined` reads everything on the caller's thread. */
  readonly #threads: ReadThreads | undefined

  constructor(root: string, options: { readThreads?: boolean } = {}) {
    this.#root = root
    this.description = `file://${root}`
    this.#threads = (options.readThreads ?? availableParallelism() > 1) ? sharedReadThreads() : undefined
  }

  #path(key: string): string {
    return join(this.#root, ...key.split('/'))
  }

  async readObject(key: string, sink: ReadSink, signal?: AbortSignal): Promise<boolean> {
    let handle: number
    try {
      handle = await fd.open(this.#path(key))
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return false
      throw error
    }
    try {
      const size = await fd.size(handle)
      if (size >= THREAD_READ_MIN_BYTES && sink.hashed !== undefined && this.#threads !== undefined) {
        const { bytes, digest } = await this.#threads.read(handle, size)
        signal?.throwIfAborted()
        sink.hashed(bytes, digest)
        return true
      }
      const bytes = sink.buffer(size)
      const view = Buffer.from(bytes.buffer, bytes.byteOffset, size)
      const readAt = (at: number) => fd.read(handle, view, at, Math.min(READ_CHUNK, size - at), at)
      let offset = 0
      let pending = size > 0 ? readAt(0) : undefined
      while (pending !== undefined) {
        const bytesRead = await pending
        if (bytesRead === 0) throw new Error(`${key} shrank while it was read`)
        offset += bytesRead
        signal?.throwIfAborted()
        // The next read is in flight while the sink hashes what just landed.
        pending = offset < size ? readAt(offset) : undefined
        sink.wrote(offset)
      }
      return true
    } finally {
      await fd.close(handle)
    }
  }

  async *streamObject(key: string, signal?: AbortSignal): AsyncIterable<Uint8Array> {
    const stream = createReadStream(this.#path(key), {
      highWaterMark: 1 << 20,
      ...(signal ? { signal } : {}),
    })
    try {
      for await (const chunk of stream) yield chunk as Buffer
    } catch (error) {
      if (isErrno(error, 'ENOENT')) throw new NotFoundSignal(key)
      throw error
    } finally {
      stream.destroy()
    }
  }

  async readRange(
    key: string,
    offset: number,
    length: number,
    signal?: AbortSignal,
  ): Promise<Uint8Array | undefined | { outOfRange: true; size: number }> {
    signal?.throwIfAborted()
    let handle: number
    try {
      handle = await fd.open(this.#path(key))
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined
      throw error
    }
    try {
      const size = await fd.size(handle)
      if (offset + length > size) return { outOfRange: true, size }
      const bytes = Buffer.allocUnsafe(length)
      let done = 0
      while (done < length) {
        const bytesRead = await fd.read(handle, bytes, done, length - done, offset + done)
        if (bytesRead === 0) throw new Error(`${key} shrank while it was read`)
        done += bytesRead
      }
      return new Uint8Array(bytes.buffer, bytes.byteOffset, length)
    } finally {
      await fd.close(handle)
    }
  }

  async objectSize(key: string, signal?: AbortSignal): Promise<number | undefined> {
    signal?.throwIfAborted()
    try {
      return (await stat(this.#path(key))).size
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined
      throw error
    }
  }

  async writeObjectIfAbsent(key: string, bytes: Uint8Array, signal?: AbortSignal): Promise<boolean> {
    signal?.throwIfAborted()
    const path = this.#path(key)
    if (await this.#freshen(path)) return false
    const temp = await this.#tempFile()
    try {
      await temp.handle.writeFile(bytes, signal ? { signal } : {})
      await temp.handle.sync()
      await temp.handle.close()
      return await this.#publish(temp.path, path)
    } finally {
      await temp.handle.close().catch(() => {})
      await unlink(temp.path).catch(() => {})
    }
  }

  async stageObject(chunks: AsyncIterable<Uint8Array>, signal?: AbortSignal): Promise<StagedObject> {
    const temp = await this.#tempFile()
    let size = 0
    try {
      for await (const chunk of chunks) {
        signal?.throwIfAborted()
        let written = 0
        while (written < chunk.byteLength) {
          const { bytesWritten } = await temp.handle.write(chunk, written, chunk.byteLength - written)
          written += bytesWritten
        }
        size += chunk.byteLength
      }
      await temp.handle.sync()
      await temp.handle.close()
    } catch (error) {
      await temp.handle.close().catch(() => {})
      await unlink(temp.path).catch(() => {})
      throw error
    }
    return {
      size,
      publish: async (key, publishSignal) => {
        publishSignal?.throwIfAborted()
        try {
          const path = this.#path(key)
          if (await this.#freshen(path)) return { stored: false }
          return { stored: await this.#publish(temp.path, path) }
        } finally {
          await unlink(temp.path).catch(() => {})
        }
      },
      discard: () => unlink(temp.path).catch(() => {}),
    }
  }

  async *listObjects(prefix: string, signal?: AbortSignal): AsyncIterable<{ key: string; size: number }> {
    for await (const key of this.#walk(prefix, signal)) {
      const size = await this.objectSize(key, signal)
      if (size !== undefined) yield { key, size }
    }
  }

  async readBlob(key: string, signal?: AbortSignal): Promise<VersionedBlob | undefined> {
    try {
      const bytes = new Uint8Array(await readFile(this.#path(key), signal ? { signal } : {}))
      return { bytes, token: toHex(sha256(bytes)) }
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined
      throw error
    }
  }

  async writeBlob(
    key: string,
    bytes: Uint8Array,
    expectedToken: string | null,
    signal?: AbortSignal,
  ): Promise<ConditionalWriteResult> {
    const path = this.#path(key)
    return await this.#underLock(key, path, signal, async () => {
      const check = await this.#compare(key, expectedToken, signal)
      if (check !== undefined) return check
      // The new body goes to a temp file beside the ref, then replaces it in one rename.
      const temp = `${path}${TEMP_INFIX}${randomBytes(8).toString('hex')}`
      try {
        const handle = await open(temp, 'wx')
        try {
          await handle.writeFile(bytes)
          await handle.sync()
        } finally {
          await handle.close()
        }
        await rename(temp, path)
      } catch (error) {
        await unlink(temp).catch(() => {})
        throw error
      }
      await fsyncDirectory(dirname(path))
      return { ok: true, token: toHex(sha256(bytes)) }
    })
  }

  async deleteBlob(
    key: string,
    expectedToken: string,
    signal?: AbortSignal,
  ): Promise<ConditionalWriteResult> {
    const path = this.#path(key)
    return await this.#underLock(key, path, signal, async () => {
      const check = await this.#compare(key, expectedToken, signal)
      if (check !== undefined) return check
      await unlink(path)
      await fsyncDirectory(dirname(path))
      return { ok: true, token: expectedToken }
    })
  }

  async *listBlobs(prefix: string, signal?: AbortSignal): AsyncIterable<string> {
    const keys: string[] = []
    for await (const key of this.#walk(prefix, signal)) {
      if (!key.endsWith(LOCK_SUFFIX) && !key.includes(TEMP_INFIX)) keys.push(key)
    }
    yield* keys.sort()
  }

  async checkConditionalWrites(): Promise<void> {
    // O_EXCL and link() are enforced by the kernel on every local filesystem we support.
  }

  async close(): Promise<void> {}

  /** `undefined` when the current body matches the expectation, else why not. */
  async #compare(
    key: string,
    expectedToken: string | null,
    signal?: AbortSignal,
  ): Promise<ConditionalWriteResult | undefined> {
    const current = await this.readBlob(key, signal)
    if (expectedToken === null) return current === undefined ? undefined : { ok: false, reason: 'exists' }
    if (current === undefined) return { ok: false, reason: 'missing' }
    return current.token === expectedToken ? undefined : { ok: false, reason: 'changed' }
  }

  /**
   * Run `fn` holding `<path>.lock`, created with O_EXCL and naming its owner (host, pid,
   * time). Waits while another writer holds it. A lock is broken when its owner is a
   * process of this host that no longer runs (a writer that crashed or was killed), or when
   * it is older than STALE_LOCK_MS (an owner elsewhere that stopped answering).
   */
  #underLock<T>(
    refName: string,
    path: string,
    signal: AbortSignal | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    const previous = this.#refQueues.get(path) ?? Promise.resolve()
    const turn = previous.catch(() => {}).then(() => this.#underFileLock(refName, path, signal, fn))
    const settled = turn.catch(() => {})
    this.#refQueues.set(path, settled)
    void settled.then(() => {
      if (this.#refQueues.get(path) === settled) this.#refQueues.delete(path)
    })
    return turn
  }

  async #underFileLock<T>(
    refName: string,
    path: string,
    signal: AbortSignal | undefined,
    fn: () => Promise<T>,
  ): Promise<T> {
    const lockPath = `${path}${LOCK_SUFFIX}`
    await mkdir(dirname(path), { recursive: true })
    const started = Date.now()
    for (let attempt = 0; ; attempt++) {
      signal?.throwIfAborted()
      let lock: FileHandle
      try {
        lock = await open(lockPath, 'wx')
      } catch (error) {
        if (!isErrno(error, 'EEXIST')) throw error
        if (await this.#breakIfAbandoned(lockPath)) continue
        const waited = Date.now() - started
        if (waited > LOCK_WAIT_MS) throw new RefLockedError(refName, lockPath, waited)
        await sleep(Math.random() * Math.min(50, 1 + attempt), signal)
        continue
      }
      try {
        await lock.writeFile(JSON.stringify({ host: hostname(), pid: process.pid, at: Date.now() }))
        await lock.close()
        return await fn()
      } finally {
        await lock.close().catch(() => {})
        await unlink(lockPath).catch(() => {})
      }
    }
  }

  async #breakIfAbandoned(lockPath: string): Promise<boolean> {
    try {
      const [seen, body] = await Promise.all([stat(lockPath), readFile(lockPath, 'utf8')])
      let owner: { host?: unknown; pid?: unknown } = {}
      try {
        owner = JSON.parse(body)
      } catch {
        // Being written right now, or left half-written by a crash: judge by age alone.
      }
      const deadHere = owner.host === hostname() && typeof owner.pid === 'number' && !isRunning(owner.pid)
      if (!deadHere && Date.now() - seen.mtimeMs < STALE_LOCK_MS) return false
      // Remove it only if it is still the lock judged above, not one taken since.
      const now = await stat(lockPath)
      if (now.ino !== seen.ino || now.mtimeMs !== seen.mtimeMs) return false
      await unlink(lockPath)
      return true
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return true
      throw error
    }
  }

  /** If the object exists, touch it so a concurrent GC sees it as fresh, and say so. */
  async #freshen(path: string): Promise<boolean> {
    try {
      const now = new Date()
      await utimes(path, now, now)
      return true
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return false
      // Read-only object files (EPERM/EACCES) still exist.
      if (isErrno(error, 'EPERM', 'EACCES')) return true
      throw error
    }
  }

  async #tempFile(): Promise<{ path: string; handle: FileHandle }> {
    const dir = this.#path(STAGING)
    await mkdir(dir, { recursive: true })
    const path = join(dir, `${process.pid}-${hostname()}-${randomBytes(8).toString('hex')}`)
    return { path, handle: await open(path, 'wx') }
  }

  /** Link a complete, fsynced temp file to its final name. `false`: someone else did first. */
  async #publish(tempPath: string, path: string): Promise<boolean> {
    const dir = dirname(path)
    await mkdir(dir, { recursive: true })
    try {
      await link(tempPath, path)
    } catch (error) {
      if (isErrno(error, 'EEXIST')) return false
      if (!isErrno(error, 'EPERM', 'ENOTSUP', 'EOPNOTSUPP')) throw error
      // Filesystems without hard links: an exclusive create of the final name, then copy.
      const handle = await open(path, 'wx').catch((e: unknown) => {
        if (isErrno(e, 'EEXIST')) return undefined
        throw e
      })
      if (handle === undefined) return false
      try {
        await handle.writeFile(await readFile(tempPath))
        await handle.sync()
      } finally {
        await handle.close()
      }
    }
    await fsyncDirectory(dir)
    return true
  }

  /** Every file key under a key prefix (which may end mid-name), depth first. */
  async *#walk(prefix: string, signal?: AbortSignal): AsyncIterable<string> {
    const slash = prefix.lastIndexOf('/')
    const dirKey = slash === -1 ? '' : prefix.slice(0, slash)
    const namePrefix = prefix.slice(slash + 1)
    let entries: import('node:fs').Dirent[]
    try {
      entries = await readdir(dirKey === '' ? this.#root : this.#path(dirKey), { withFileTypes: true })
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return
      throw error
    }
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    for (const entry of entries) {
      signal?.throwIfAborted()
      if (!entry.name.startsWith(namePrefix)) continue
      const key = dirKey === '' ? entry.name : `${dirKey}/${entry.name}`
      if (entry.isDirectory()) yield* this.#walk(`${key}/`, signal)
      else if (entry.isFile()) yield key
    }
  }
}
