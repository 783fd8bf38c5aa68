import { randomBytes } from 'node:crypto'
import { close, createReadStream, fstat, open as openFd, read, readFileSync, readlinkSync } from 'node:fs'
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
  writeFile,
} from 'node:fs/promises'
import { availableParallelism, hostname } from 'node:os'
import { dirname, join } from 'node:path'
import pLimit, { type LimitFunction } from 'p-limit'
import { retry } from '../concurrency.js'
import { sha256, toHex } from '../digest.js'
import { RefLockedError } from '../errors.js'
import type { ReadSink } from '../hashing.js'
import { REFS, STAGING } from '../layout.js'
import type {
  Backend,
  ConditionalWriteResult,
  DeleteResult,
  LeftoverEntry,
  ListedKey,
  ObjectWrite,
  StagedObject,
  VersionedBlob,
} from './backend.js'
import { NotFoundSignal } from './backend.js'
import { type ReadThreads, sharedReadThreads, THREAD_READ_MIN_BYTES } from './read-threads.js'

/** Reads are split into chunks so hashing one chunk overlaps reading the next. */
const READ_CHUNK = 4 << 20
/**
 * A ref lock's lease (design/0002): an owner whose death cannot be proved (another host,
 * another PID namespace, another boot, or no /proc) is presumed dead once its lock has
 * stayed unchanged for this long, as timed by the waiter's own clock. A live owner renews it
 * every LOCK_RENEW_MS; a healthy writer holds a ref lock for milliseconds.
 */
const LOCK_LEASE_MS = 10_000
const LOCK_RENEW_MS = 2_500
/**
 * An empty or unreadable lock: never made by this version (a lock is linked into place
 * with its owner already in it), so it is left by a crash or an older version. It is broken
 * once it has stayed so, unchanged, this long: enough for an older writer to fill it in.
 */
const UNREADABLE_LOCK_MS = 500
/** How long a writer waits for a live lock before giving up (past the lease). */
const LOCK_WAIT_MS = 45_000
const LOCK_SUFFIX = '.lock'
/** A GC renames an object it deletes into `tmp/` under this prefix first (design/0008). */
const GC_TRASH_PREFIX = 'gc-'
/** Marks a ref body being written next to its ref; never listed, never read. */
const TEMP_INFIX = '.tmp-'

/** A ref lock someone else holds, or one we just broke as abandoned: try to take it again. */
class LockTaken extends Error {
  constructor(readonly by: 'held' | 'broken') {
    super(`the ref lock is ${by}`)
  }
}

/** What a lock file says about its owner (format 2). Older locks hold `{host, pid, at}`. */
interface LockOwner {
  v: 2
  host: string
  pid: number
  /** /proc/sys/kernel/random/boot_id, where there is one. */
  boot?: string
  /** The PID namespace, `pid:[<inode>]` from /proc/self/ns/pid, where there is one. */
  pidns?: string
  /** The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat). */
  start?: string
  at: number
}

/** This process, as lock files describe their owner; read once. */
let self: (Omit<LockOwner, 'at'> & { procIsOurs: boolean }) | undefined
function lockIdentity(): Omit<LockOwner, 'at'> & { procIsOurs: boolean } {
  if (self !== undefined) return self
  const read = (fn: () => string): string | undefined => {
    try {
      return fn().trim() || undefined
    } catch {
      return undefined
    }
  }
  // /proc numbers processes of the namespace it was mounted in; only then are
  // /proc/<pid> entries ours to read.
  const procIsOurs = read(() => readlinkSync('/proc/self')) === String(process.pid)
  const boot = read(() => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8'))
  const pidns = read(() => readlinkSync('/proc/self/ns/pid'))
  const start = procIsOurs ? procStat(process.pid)?.start : undefined
  self = {
    v: 2,
    host: hostname(),
    pid: process.pid,
    ...(boot ? { boot } : {}),
    ...(pidns ? { pidns } : {}),
    ...(start ? { start } : {}),
    procIsOurs,
  }
  return self
}

/** State and start time of a process from /proc/<pid>/stat, or `undefined`. */
function procStat(pid: number): { state: string; start: string } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name, which is in parentheses and may hold spaces.
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
    const state = fields[0]
    const start = fields[19]
    return state !== undefined && start !== undefined ? { state, start } : undefined
  } catch {
    return undefined
  }
}

/**
 * Whether the owner of a lock is provably gone: it ran under this boot of this kernel, in
 * this PID namespace (so its pid means the same process here), and that pid now runs no
 * process, a zombie, or a process started at another time (the pid was reused). Anything
 * less is not proof: the lease decides.
 */
export function lockOwnerIsDead(owner: Partial<LockOwner>): boolean {
  const me = lockIdentity()
  if (me.boot === undefined || me.pidns === undefined) return false
  if (owner.v !== 2 || owner.boot !== me.boot || owner.pidns !== me.pidns) return false
  const pid = owner.pid
  if (typeof pid !== 'number' || !Number.isSafeInteger(pid) || pid <= 0) return false
  if (!isRunning(pid)) return true
  if (!me.procIsOurs) return false
  const now = procStat(pid)
  if (now === undefined) return false
  return now.state === 'Z' || (typeof owner.start === 'string' && now.start !== owner.start)
}

/** Whether a process of this PID namespace is still running. */
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

/**
 * Link the staged lock into place. Where a filesystem has no hard links, fall back to an
 * exclusive create and a write: there a lock is briefly empty, which waiters allow for
 * (UNREADABLE_LOCK_MS).
 */
async function linkLock(staged: string, lockPath: string): Promise<void> {
  try {
    await link(staged, lockPath)
  } catch (error) {
    if (!isErrno(error, 'EPERM', 'ENOTSUP', 'EOPNOTSUPP')) throw error
    const handle = await open(lockPath, 'wx')
    try {
      await handle.writeFile(await readFile(staged))
    } finally {
      await handle.close()
    }
  }
}

/**
 * A waiter's view of one lock file, across its polls. Time is the waiter's own clock: a
 * lock is judged by how long *we* have seen it unchanged, never by comparing its mtime
 * with our clock, so hosts whose clocks disagree still agree on expiry.
 */
class LockJudge {
  /** The lock as last seen (inode, mtime, size) and when we first saw it so. */
  #seen: { key: string; since: number } | undefined

  /** `true` when the lock was abandoned and is now removed (or gone): try to take it. */
  async breakIfAbandoned(lockPath: string): Promise<boolean> {
    try {
      const [seen, body] = await Promise.all([stat(lockPath), readFile(lockPath, 'utf8')])
      const key = `${seen.ino}:${seen.mtimeMs}:${seen.size}`
      const now = Date.now()
      if (this.#seen?.key !== key) this.#seen = { key, since: now }
      const unchangedFor = now - this.#seen.since
      let owner: Partial<LockOwner> | undefined
      try {
        const parsed: unknown = JSON.parse(body)
        if (typeof parsed === 'object' && parsed !== null) owner = parsed as Partial<LockOwner>
      } catch {
        // Empty or half-written: left by a crash of an older version, or one filling it in.
      }
      const abandoned =
        owner === undefined
          ? unchangedFor >= UNREADABLE_LOCK_MS
          : lockOwnerIsDead(owner) || unchangedFor >= LOCK_LEASE_MS
      if (!abandoned) return false
      // Remove it only if it is still the lock judged above, not one taken since.
      const current = await stat(lockPath)
      if (`${current.ino}:${current.mtimeMs}:${current.size}` !== key) return false
      await unlink(lockPath)
      this.#seen = undefined
      return true
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return true
      throw error
    }
  }
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
   * Ref operations of this process, one at a time per ref (a limit of 1 each): writers of one
   * process queue here instead of meeting at the lock file, so two of them can never both
   * judge the same abandoned lock and break each other's fresh one.
   */
  readonly #refQueues = new Map<string, LimitFunction>()

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

  /** A descriptor of an object file open for reading, or `undefined` when there is no such file. */
  async #openObject(key: string): Promise<number | undefined> {
    try {
      return await fd.open(this.#path(key))
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined
      throw error
    }
  }

  async readObject(key: string, sink: ReadSink, signal?: AbortSignal): Promise<boolean> {
    const handle = await this.#openObject(key)
    if (handle === undefined) return false
    try {
      const size = await fd.size(handle)
      if (size >= THREAD_READ_MIN_BYTES && sink.hashed !== undefined && this.#threads !== undefined) {
        const { bytes, digest, moved, rowsAt } = await this.#threads.read(
          handle,
          size,
          sink.spare?.(size),
          sink.rows,
        )
        signal?.throwIfAborted()
        sink.hashed(bytes, digest, moved, rowsAt)
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
    const handle = await this.#openObject(key)
    if (handle === undefined) return undefined
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

  async freshenObject(key: string, signal?: AbortSignal): Promise<number | undefined> {
    signal?.throwIfAborted()
    return await this.#freshen(this.#path(key))
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

  async writeObjectIfAbsent(key: string, bytes: Uint8Array, signal?: AbortSignal): Promise<ObjectWrite> {
    signal?.throwIfAborted()
    const path = this.#path(key)
    const existing = await this.#freshen(path)
    if (existing !== undefined) return { written: false, size: existing }
    const temp = await this.#tempFile()
    try {
      await temp.handle.writeFile(bytes, signal ? { signal } : {})
      await temp.handle.sync()
      await temp.handle.close()
      return (await this.#publish(temp.path, path)) ? { written: true } : { written: false }
    } finally {
      await temp.handle.close().catch(() => {})
      await unlink(temp.path).catch(() => {})
    }
  }

  async replaceObject(key: string, bytes: Uint8Array, signal?: AbortSignal): Promise<void> {
    signal?.throwIfAborted()
    const temp = await this.#tempFile()
    try {
      await temp.handle.writeFile(bytes, signal ? { signal } : {})
      await temp.handle.sync()
      await temp.handle.close()
      await this.#replace(temp.path, this.#path(key))
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
        const path = this.#path(key)
        const existing = await this.#freshen(path)
        if (existing !== undefined) return { written: false, size: existing }
        return (await this.#publish(temp.path, path)) ? { written: true } : { written: false }
      },
      replace: async (key, publishSignal) => {
        publishSignal?.throwIfAborted()
        await this.#replace(temp.path, this.#path(key))
      },
      discard: () => unlink(temp.path).catch(() => {}),
    }
  }

  async *listObjects(prefix: string, signal?: AbortSignal): AsyncIterable<ListedKey> {
    for await (const key of this.#walk(prefix, signal)) {
      const seen = await this.#stat(key)
      if (seen !== undefined) yield { key, ...seen }
    }
  }

  /**
   * Delete objects. With `modifiedBefore`, each object is first renamed into `tmp/` (so a
   * writer's freshen, `stat` then `utimes` by path, either lands before the rename, on the
   * inode we then look at, or fails with ENOENT and the writer writes the object anew),
   * then judged by the renamed file's mtime: old, it is unlinked; fresh, it is linked back.
   */
  async deleteObjects(
    keys: readonly string[],
    modifiedBefore: number | undefined,
    signal?: AbortSignal,
  ): Promise<DeleteResult[]> {
    const results: DeleteResult[] = []
    for (const key of keys) {
      signal?.throwIfAborted()
      results.push(await this.#deleteObject(key, modifiedBefore))
    }
    return results
  }

  async #deleteObject(key: string, modifiedBefore: number | undefined): Promise<DeleteResult> {
    const path = this.#path(key)
    try {
      if (modifiedBefore === undefined) {
        await unlink(path)
        return { key, deleted: true }
      }
      const before = await stat(path)
      if (before.mtimeMs >= modifiedBefore) return { key, deleted: false, reason: 'fresh' }
      const dir = this.#path(STAGING)
      await mkdir(dir, { recursive: true })
      const trash = join(
        dir,
        `${GC_TRASH_PREFIX}${key.slice(key.lastIndexOf('/') + 1)}-${randomBytes(4).toString('hex')}`,
      )
      await rename(path, trash)
      const after = await stat(trash)
      if (after.mtimeMs < modifiedBefore) {
        await unlink(trash)
        return { key, deleted: true }
      }
      // A writer freshened it between our stat and the rename: put it back.
      try {
        await link(trash, path)
      } catch (error) {
        // EEXIST: the writer found it gone and wrote it again meanwhile.
        if (!isErrno(error, 'EEXIST')) throw error
      }
      await unlink(trash)
      return { key, deleted: false, reason: 'fresh' }
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return { key, deleted: false, reason: 'missing' }
      throw error
    }
  }

  async *listLeftovers(signal?: AbortSignal): AsyncIterable<LeftoverEntry> {
    for await (const key of this.#walk(STAGING, signal)) {
      const seen = await this.#stat(key)
      if (seen !== undefined) yield { id: key, kind: 'staging', ...seen }
    }
    for await (const key of this.#walk(REFS, signal)) {
      if (!key.includes(TEMP_INFIX)) continue
      const seen = await this.#stat(key)
      if (seen !== undefined) yield { id: key, kind: 'ref-temp', ...seen }
    }
  }

  async deleteLeftover(
    id: string,
    modifiedBefore: number | undefined,
    signal?: AbortSignal,
  ): Promise<boolean> {
    signal?.throwIfAborted()
    const staging = id.startsWith(STAGING) && !id.slice(STAGING.length).includes('/')
    const refTemp = id.startsWith(REFS) && id.includes(TEMP_INFIX)
    if ((!staging && !refTemp) || id.includes('..')) return false
    const seen = await this.#stat(id)
    if (seen === undefined) return false
    if (modifiedBefore !== undefined && seen.mtime >= modifiedBefore) return false
    try {
      await unlink(this.#path(id))
      return true
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return false
      throw error
    }
  }

  async #stat(key: string): Promise<{ size: number; mtime: number } | undefined> {
    try {
      const seen = await stat(this.#path(key))
      return { size: seen.size, mtime: Math.floor(seen.mtimeMs) }
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined
      throw error
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
    return await this.#ifAt(key, expectedToken, signal, async (path, stillHeld) => {
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
        // Our lease was judged expired and the lock taken over (we were paused for longer
        // than LOCK_LEASE_MS): write nothing; the store re-reads and tries again.
        if (!(await stillHeld())) {
          await unlink(temp).catch(() => {})
          return { ok: false, reason: 'changed' }
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
    return await this.#ifAt(key, expectedToken, signal, async (path, stillHeld) => {
      if (!(await stillHeld())) return { ok: false, reason: 'changed' }
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

  /**
   * Under the ref's lock, run `fn` if the ref is at `expectedToken` (`null`: absent); else
   * say why not, without running it.
   */
  #ifAt(
    key: string,
    expectedToken: string | null,
    signal: AbortSignal | undefined,
    fn: (path: string, stillHeld: () => Promise<boolean>) => Promise<ConditionalWriteResult>,
  ): Promise<ConditionalWriteResult> {
    const path = this.#path(key)
    return this.#underLock(key, path, signal, async (stillHeld) => {
      const current = await this.readBlob(key, signal)
      if (expectedToken === null) {
        if (current !== undefined) return { ok: false, reason: 'exists' }
      } else if (current === undefined) return { ok: false, reason: 'missing' }
      else if (current.token !== expectedToken) return { ok: false, reason: 'changed' }
      return await fn(path, stillHeld)
    })
  }

  /**
   * Run `fn` holding `<path>.lock` (design/0002, "On a folder"). Writers of this process
   * queue per ref first; then the lock file is linked into place already holding its owner,
   * renewed while held, and removed after, if it is still ours. `fn` can ask whether it
   * still holds the lock right before it commits.
   */
  #underLock<T>(
    refName: string,
    path: string,
    signal: AbortSignal | undefined,
    fn: (stillHeld: () => Promise<boolean>) => Promise<T>,
  ): Promise<T> {
    let queue = this.#refQueues.get(path)
    if (queue === undefined) {
      queue = pLimit(1)
      this.#refQueues.set(path, queue)
    }
    const turn = queue(() => this.#underFileLock(refName, path, signal, fn))
    // p-limit counts a call done before its caller hears of it: an idle queue is dropped here.
    void turn
      .catch(() => {})
      .then(() => {
        if (queue.activeCount === 0 && queue.pendingCount === 0 && this.#refQueues.get(path) === queue)
          this.#refQueues.delete(path)
      })
    return turn
  }

  async #underFileLock<T>(
    refName: string,
    path: string,
    signal: AbortSignal | undefined,
    fn: (stillHeld: () => Promise<boolean>) => Promise<T>,
  ): Promise<T> {
    const lockPath = `${path}${LOCK_SUFFIX}`
    await mkdir(dirname(path), { recursive: true })
    const started = Date.now()
    const judge = new LockJudge()
    const { procIsOurs: _, ...identity } = lockIdentity()
    // The owner is in the file before the file is the lock: link() publishes it whole, and
    // fails with EEXIST instead of replacing a lock someone else holds.
    const staged = `${lockPath}${TEMP_INFIX}${randomBytes(8).toString('hex')}`
    await writeFile(staged, JSON.stringify({ ...identity, at: Date.now() } satisfies LockOwner), {
      flag: 'wx',
    })
    let ours: number
    // The lock this call linked, if any: p-retry throws a caller's abort even after an attempt
    // succeeded, and a lock linked then would otherwise stay until its lease ran out.
    let linked: number | undefined
    try {
      ours = await retry(
        async () => {
          try {
            await linkLock(staged, lockPath)
            linked = (await stat(lockPath)).ino
            return linked
          } catch (error) {
            if (!isErrno(error, 'EEXIST')) throw error
          }
          if (await judge.breakIfAbandoned(lockPath)) throw new LockTaken('broken')
          const waited = Date.now() - started
          if (waited > LOCK_WAIT_MS) throw new RefLockedError(refName, lockPath, waited)
          throw new LockTaken('held')
        },
        {
          attempts: Number.POSITIVE_INFINITY,
          // A lock just broken is tried again at once; a held one after a short random wait.
          retryable: (error) => (error instanceof LockTaken ? (error.by === 'broken' ? 'now' : true) : false),
          backoff: { minMs: 1, maxMs: 50, factor: 1.25 },
          signal,
        },
      )
    } catch (error) {
      if (linked !== undefined) {
        const current = await stat(lockPath).catch(() => undefined)
        if (current?.ino === linked) await unlink(lockPath).catch(() => {})
      }
      throw error
    } finally {
      await unlink(staged).catch(() => {})
    }
    const stillHeld = async (): Promise<boolean> => {
      try {
        return (await stat(lockPath)).ino === ours
      } catch (error) {
        if (isErrno(error, 'ENOENT')) return false
        throw error
      }
    }
    // Renew the lease while held: a changed mtime tells waiters the owner lives.
    const renew = setInterval(() => {
      void stillHeld()
        .then((held) => {
          if (held) {
            const now = new Date()
            return utimes(lockPath, now, now)
          }
        })
        .catch(() => {})
    }, LOCK_RENEW_MS)
    renew.unref()
    try {
      return await fn(stillHeld)
    } finally {
      clearInterval(renew)
      // Remove it only while it is ours: a lock taken over after our lease ran out is not.
      if (await stillHeld().catch(() => false)) await unlink(lockPath).catch(() => {})
    }
  }

  /**
   * If the object exists, touch it so a concurrent GC sees it as fresh, and return its size
   * (`undefined`: absent).
   */
  async #freshen(path: string): Promise<number | undefined> {
    let size: number
    try {
      size = (await stat(path)).size
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined
      throw error
    }
    try {
      const now = new Date()
      await utimes(path, now, now)
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined
      // Read-only object files (EPERM/EACCES) still exist.
      if (!isErrno(error, 'EPERM', 'EACCES')) throw error
    }
    return size
  }

  /** Move a complete, fsynced temp file over whatever is at `path` (a damaged object). */
  async #replace(tempPath: string, path: string): Promise<void> {
    const dir = dirname(path)
    await mkdir(dir, { recursive: true })
    await rename(tempPath, path)
    await fsyncDirectory(dir)
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
