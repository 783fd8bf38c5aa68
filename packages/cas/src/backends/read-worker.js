/**
 * A read thread (see read-threads.ts): reads a file through a descriptor the main thread
 * opened, receives an S3 object over plain HTTP with headers the main thread signed, or
 * takes bytes already received; hashes them with SHA-256, and hands both back without a
 * copy (the buffer is transferred).
 *
 * Plain JavaScript with only Node built-ins, so that the same file runs beside the
 * TypeScript sources under a test runner and, built by tsup, beside the package's bundle.
 *
 * Requests: `{ id, fd, size, spare? }` (read and hash; into the shared `spare` in place when
 * given), `{ id, buffer, size }` (hash), `{ id, get: { url, headers, timeoutMs,
 * connectTimeoutMs }, spare?, shared? }` (an HTTP GET; the body into the shared `spare` when
 * it fits, replying `intoSpare`, else into a new SharedArrayBuffer when `shared`) and
 * `{ id, cancel: true }` (stop
 * that GET) and `{ id, permute: { buffers, offsets, rowBytes, bucketOf, rowOf, order } }` (rows of
 * a shuffled window put in its order in place; replies `{ id, buffers }`). A read may carry
 * `rows: { group, part, parts, offset, count, expect, rowBytes?, bucketOf?, rowOf?, order? }` (one
 * object of a row group, the moves sent with its first part; see `groups`), answered with
 * `moved` (a group's parts are read, hashed and moved in one pass once all are in);
 * `{ id: 0, release: group }` gives a group up. Replies: `{ id, buffer, digest }`, for a GET with `status` (an answer other
 * than 200 carries `body`, the start of its text, instead), or `{ id, error: { message,
 * code } }`.
 */
import { createHash } from 'node:crypto'
import { read, readSync } from 'node:fs'
import { Agent as HttpAgent, request as httpRequest } from 'node:http'
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https'
import { connect } from 'node:net'
import { parentPort } from 'node:worker_threads'
import { permuteRows } from './permute-rows.js'

// Each thread keeps its own pooled connections.
const agents = {
  http: new HttpAgent({ keepAlive: true, maxSockets: 64 }),
  https: new HttpsAgent({ keepAlive: true, maxSockets: 64 }),
}
/** GETs under way, by request id, so that a cancel can stop one. */
const gets = new Map()

const failure = (code, message) => Object.assign(new Error(message), { code })

/** Response heads larger than this are refused (S3 heads are a few hundred bytes). */
const HEAD_MAX = 64 << 10
/** Idle keep-alive connections of plain-HTTP GETs, by `host:port`. */
const idle = new Map()
/** Servers (`host:port`) that answered a GET with a body without a length: node:http reads theirs. */
const framed = new Set()

/**
 * One keep-alive connection of `plainGet`. The socket reads straight into the buffer the
 * response in hand offers (`onread`): the head into a scratch buffer, then the body into the
 * object's own buffer at the offset reached, so a body byte is copied once, by the kernel,
 * and no chunk is allocated per read.
 */
class Connection {
  constructor(host, port) {
    this.key = `${host}:${port}`
    this.scratch = Buffer.allocUnsafe(HEAD_MAX)
    /** The response being received, if any. */
    this.exchange = undefined
    /** Whether a response came over it already (a reused socket the server may have closed). */
    this.used = false
    this.closed = false
    this.connected = false
    this.socket = connect({
      host,
      port,
      onread: {
        buffer: () => this.exchange?.into() ?? this.scratch,
        callback: (n) => {
          // Bytes while no request is out (a server's unsolicited answer before it closes an
          // idle connection, or the rest of an answer nobody waits for) would be taken for
          // the start of the next request's answer: such a connection is never reused.
          if (this.exchange === undefined) this.socket.destroy()
          else this.exchange.received(n)
        },
      },
    })
    this.socket.setNoDelay(true)
    this.socket.once('connect', () => {
      this.connected = true
    })
    this.socket.on('error', (error) => this.exchange?.fail(error))
    this.socket.on('close', () => {
      this.closed = true
      const list = idle.get(this.key)
      if (list !== undefined) {
        const at = list.indexOf(this)
        if (at >= 0) list.splice(at, 1)
      }
      this.exchange?.lost()
    })
  }
}

/** The host (an IPv6 address without brackets), port and pool key of a plain-HTTP URL. */
function origin(target) {
  const host = target.hostname.replace(/^\[|\]$/g, '')
  const port = Number(target.port || 80)
  return { host, port, key: `${host}:${port}` }
}

/** A connection to `host:port`: an idle one, or a new one. */
function connection(host, port) {
  const list = idle.get(`${host}:${port}`)
  while (list !== undefined && list.length > 0) {
    const conn = list.pop()
    if (!conn.closed && !conn.socket.destroyed) return conn
  }
  return new Connection(host, port)
}

/**
 * A GET over plain HTTP/1.1 on a pooled connection, without `node:http`: the request is
 * written as it is, the head parsed here, the body read into one buffer of its
 * Content-Length and hashed as it lands. Same deadlines and replies as `get`. A reused
 * connection that the server closed before answering is replaced once, transparently.
 */
function plainGet(
  id,
  { url, headers, timeoutMs, connectTimeoutMs },
  retried = false,
  spare = undefined,
  shared = false,
) {
  const target = new URL(url)
  const { host, port } = origin(target)
  const conn = connection(host, port)
  const reused = conn.used
  let timer
  let connectTimer
  let done = false
  // 'head' | 'body' | 'error'
  let state = 'head'
  let headLength = 0
  let bodyStart = 0
  let status = 0
  let length = 0
  let keepAlive = true
  /** An error answer's body comes in chunks (it ends with a chunk of size 0). */
  let errorChunked = false
  let bytes
  let at = 0
  let hash
  /** Where the body goes: 'spare' (filled in place), 'shared' (a new SharedArrayBuffer) or 'own'. */
  let into = 'own'
  const end = (reuse) => {
    done = true
    clearTimeout(timer)
    clearTimeout(connectTimer)
    gets.delete(id)
    conn.exchange = undefined
    if (reuse && keepAlive && !conn.closed) {
      conn.used = true
      const list = idle.get(conn.key) ?? []
      list.push(conn)
      idle.set(conn.key, list)
    } else conn.socket.destroy()
  }
  const fail = (error) => {
    if (done) return
    end(false)
    parentPort?.postMessage({ id, error: { message: String(error?.message), code: error?.code } })
  }
  const succeed = () => {
    if (done) return
    end(true)
    const digest = new Uint8Array(hash.digest())
    if (into === 'spare') parentPort?.postMessage({ id, status, size: length, digest, intoSpare: true })
    else if (into === 'shared')
      parentPort?.postMessage({ id, status, buffer: bytes.buffer, size: length, digest })
    else parentPort?.postMessage({ id, status, buffer: bytes.buffer, size: length, digest }, [bytes.buffer])
  }
  const answer = (body) => {
    if (done) return
    // An error answer's body may be cut short here: the connection is not reused.
    end(false)
    parentPort?.postMessage({ id, status, body })
  }
  const silence = () => {
    clearTimeout(timer)
    timer = setTimeout(() => fail(failure('ERR_CAS_SILENT', `no answer within ${timeoutMs} ms`)), timeoutMs)
  }
  const head = () => {
    const text = conn.scratch.toString('latin1', 0, bodyStart - 4)
    const lines = text.split('\r\n')
    const statusLine = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')
    if (statusLine === null) return fail(failure('ERR_CAS_BAD_RESPONSE', 'not an HTTP/1.1 response'))
    status = Number(statusLine[1])
    let declared
    let chunked = false
    for (let i = 1; i < lines.length; i++) {
      const colon = lines[i].indexOf(':')
      if (colon < 0) continue
      const name = lines[i].slice(0, colon).trim().toLowerCase()
      const value = lines[i].slice(colon + 1).trim()
      if (name === 'content-length') declared = Number(value)
      else if (name === 'connection' && value.toLowerCase() === 'close') keepAlive = false
      else if (name === 'transfer-encoding' && value.toLowerCase() !== 'identity') chunked = true
    }
    if (lines[0].startsWith('HTTP/1.0')) keepAlive = false
    const inHand = headLength - bodyStart
    if (status !== 200 || chunked || declared === undefined || !Number.isSafeInteger(declared)) {
      if (status === 200) {
        // A body without a length (chunked): this reader does not decode it. The GET is sent
        // again through node:http, now and from now on for this server.
        done = true
        clearTimeout(timer)
        clearTimeout(connectTimer)
        conn.exchange = undefined
        conn.socket.destroy()
        framed.add(conn.key)
        get(id, { url, headers, timeoutMs, connectTimeoutMs }, shared)
        return
      }
      // An error answer (small XML): what arrived with the head, up to its length; a chunked
      // one up to its last chunk (its text keeps the chunk sizes: only its <Code> is read).
      state = 'error'
      errorChunked = chunked
      length = declared !== undefined && Number.isSafeInteger(declared) && !chunked ? declared : -1
      errorEnded()
      return
    }
    length = declared
    // A spare is filled when the body fits it and fills at least half of it.
    if (spare !== undefined && spare.byteLength >= length && spare.byteLength <= 2 * length) {
      bytes = Buffer.from(spare, 0, length)
      into = 'spare'
    } else if (shared) {
      bytes = Buffer.from(new SharedArrayBuffer(length))
      into = 'shared'
    } else bytes = Buffer.allocUnsafeSlow(length)
    hash = createHash('sha256')
    if (inHand > length) return fail(failure('ERR_CAS_LONG_BODY', 'response body longer than Content-Length'))
    conn.scratch.copy(bytes, 0, bodyStart, headLength)
    hash.update(bytes.subarray(0, inHand))
    at = inHand
    state = 'body'
    if (at === length) succeed()
  }
  /** Answers an error answer once its body is in hand (by its length, its last chunk, or the head buffer full). */
  const errorEnded = () => {
    const inHand = headLength - bodyStart
    if (length >= 0 && inHand >= length) answer(conn.scratch.toString('utf8', bodyStart, bodyStart + length))
    else if (
      errorChunked &&
      (conn.scratch.subarray(bodyStart, headLength).indexOf('\r\n0\r\n\r\n') >= 0 ||
        conn.scratch.toString('latin1', bodyStart, bodyStart + 5) === '0\r\n\r\n')
    )
      answer(conn.scratch.toString('utf8', bodyStart, headLength))
    else if (headLength >= HEAD_MAX) answer(conn.scratch.toString('utf8', bodyStart, headLength))
  }
  conn.exchange = {
    into: () => {
      if (state === 'body') return bytes.subarray(at)
      return conn.scratch.subarray(headLength)
    },
    received: (n) => {
      if (done || n <= 0) return
      silence()
      if (state === 'body') {
        hash.update(bytes.subarray(at, at + n))
        at += n
        if (at === length) succeed()
        return
      }
      headLength += n
      if (state === 'error') {
        errorEnded()
        return
      }
      const found = conn.scratch.subarray(0, headLength).indexOf('\r\n\r\n')
      if (found >= 0) {
        bodyStart = found + 4
        head()
      } else if (headLength >= HEAD_MAX) fail(failure('ERR_CAS_BAD_RESPONSE', 'response head too large'))
    },
    fail,
    lost: () => {
      if (done) return
      if (state === 'error') {
        // An error answer without a length ends with its connection.
        answer(conn.scratch.toString('utf8', bodyStart, headLength))
        return
      }
      if (reused && !retried && headLength === 0) {
        // The server closed the idle connection as the request went out: a new one.
        done = true
        clearTimeout(timer)
        gets.delete(id)
        plainGet(id, { url, headers, timeoutMs, connectTimeoutMs }, true, spare, shared)
        return
      }
      fail(failure('ECONNRESET', 'connection lost'))
    },
  }
  gets.set(id, { destroy: (error) => fail(error) })
  silence()
  if (!conn.connected) {
    connectTimer = setTimeout(
      () =>
        fail(
          failure(
            'ERR_CAS_CONNECT_TIMEOUT',
            `could not establish a connection within ${connectTimeoutMs} ms`,
          ),
        ),
      connectTimeoutMs,
    )
    conn.socket.once('connect', () => clearTimeout(connectTimer))
  }
  let request = `GET ${target.pathname}${target.search} HTTP/1.1\r\n`
  for (const [name, value] of Object.entries(headers)) request += `${name}: ${value}\r\n`
  conn.socket.write(`${request}\r\n`, 'latin1')
}

/**
 * One GET through `node:http` (HTTPS; plain HTTP goes through `plainGet`). Deadlines as the main thread's SDK requests have them (design/0002): the answer
 * and then every body chunk must come within `timeoutMs` (code ERR_CAS_SILENT), a
 * connection must open within `connectTimeoutMs` (ERR_CAS_CONNECT_TIMEOUT, nothing sent).
 * The body is copied into one buffer of its Content-Length and hashed chunk by chunk as it
 * lands, so the reply is ready when the last byte is.
 */
function get(id, { url, headers, timeoutMs, connectTimeoutMs }, shared = false) {
  const secure = url.startsWith('https:')
  let timer
  let done = false
  const finish = (reply, transfer) => {
    if (done) return
    done = true
    clearTimeout(timer)
    gets.delete(id)
    parentPort?.postMessage(reply, transfer)
  }
  /** A body's buffer: shared when the caller recycles buffers (not transferred), else its own. */
  const allocate = (length) =>
    shared ? Buffer.from(new SharedArrayBuffer(length)) : Buffer.allocUnsafeSlow(length)
  const sent = (bytes) => (shared ? [] : [bytes.buffer])
  const fail = (error) => finish({ id, error: { message: String(error?.message), code: error?.code } })
  const request = (secure ? httpsRequest : httpRequest)(url, {
    method: 'GET',
    headers,
    agent: secure ? agents.https : agents.http,
  })
  const silence = () => {
    clearTimeout(timer)
    timer = setTimeout(
      () => request.destroy(failure('ERR_CAS_SILENT', `no answer within ${timeoutMs} ms`)),
      timeoutMs,
    )
  }
  silence()
  gets.set(id, request)
  request.on('socket', (socket) => {
    if (!socket.connecting) return
    const connectTimer = setTimeout(
      () =>
        request.destroy(
          failure(
            'ERR_CAS_CONNECT_TIMEOUT',
            `could not establish a connection within ${connectTimeoutMs} ms`,
          ),
        ),
      connectTimeoutMs,
    )
    socket.once(secure ? 'secureConnect' : 'connect', () => clearTimeout(connectTimer))
    socket.once('close', () => clearTimeout(connectTimer))
  })
  request.on('error', fail)
  request.on('response', (response) => {
    silence()
    const status = response.statusCode ?? 0
    const declared = Number(response.headers['content-length'])
    response.on('error', fail)
    response.on('close', () => {
      if (!response.complete) fail(failure('ECONNRESET', 'connection lost (the body was cut short)'))
    })
    if (status !== 200 || !Number.isSafeInteger(declared)) {
      // An error answer (small XML), or a body without a length: collect it whole.
      const parts = []
      response.on('data', (chunk) => {
        silence()
        parts.push(chunk)
      })
      response.on('end', () => {
        const all = Buffer.concat(parts)
        if (status !== 200) finish({ id, status, body: all.toString('utf8', 0, 4096) })
        else {
          const bytes = allocate(all.length)
          all.copy(bytes)
          const digest = new Uint8Array(createHash('sha256').update(bytes).digest())
          finish({ id, status, buffer: bytes.buffer, size: all.length, digest }, sent(bytes))
        }
      })
      return
    }
    const bytes = allocate(declared)
    const hash = createHash('sha256')
    let at = 0
    response.on('data', (chunk) => {
      silence()
      if (at + chunk.length > declared) {
        request.destroy(failure('ERR_CAS_LONG_BODY', 'response body longer than Content-Length'))
        return
      }
      chunk.copy(bytes, at)
      at += chunk.length
      hash.update(chunk)
    })
    response.on('end', () => {
      if (at !== declared) {
        fail(failure('ERR_CAS_SHORT_BODY', `response body ended after ${at} of ${declared} bytes`))
        return
      }
      const digest = new Uint8Array(hash.digest())
      finish({ id, status, buffer: bytes.buffer, size: declared, digest }, sent(bytes))
    })
  })
  request.end()
}

const CHUNK = 4 << 20
// Up to this size the object is read in one go on this thread, then hashed: other threads
// are hashing other objects meanwhile (measured 11% faster in a dataset iteration of 16 MiB
// objects). A larger one is read chunk by chunk on the pool while this thread hashes the
// previous chunk, so that one big read still overlaps reading with hashing.
const SYNC_MAX = 32 << 20

const shrank = () => Object.assign(new Error('the file shrank while it was read'), { code: 'ESHRANK' })

/** @type {(fd: number, bytes: Buffer, at: number, length: number) => Promise<number>} */
const readAt = (fd, bytes, at, length) =>
  new Promise((resolve, reject) => read(fd, bytes, at, length, at, (e, n) => (e ? reject(e) : resolve(n))))

/** @param {number} fd @param {Buffer} bytes @param {import('node:crypto').Hash} hash */
function readWhole(fd, bytes, hash) {
  for (let at = 0; at < bytes.length; ) {
    const got = readSync(fd, bytes, at, bytes.length - at, at)
    if (got === 0) throw shrank()
    at += got
  }
  hash.update(bytes)
}

/** @param {number} fd @param {Buffer} bytes @param {import('node:crypto').Hash} hash */
async function readChunked(fd, bytes, hash) {
  const size = bytes.length
  let at = 0
  let pending = readAt(fd, bytes, 0, Math.min(CHUNK, size))
  while (pending !== undefined) {
    const got = await pending
    if (got === 0) throw shrank()
    const start = at
    at += got
    pending = at < size ? readAt(fd, bytes, at, Math.min(CHUNK, size - at)) : undefined
    hash.update(bytes.subarray(start, at))
  }
}

/**
 * Rows read at a time by `readGroupMoved`, into this thread's scratch: small enough to stay
 * in the core's cache between the read, the hash and the moves.
 */
const MOVE_CHUNK = 128 << 10

/** This thread's scratch for `readGroupMoved`, and a view of each of its rows, by row size. */
let scratchCache = { rowBytes: 0, rowsPer: 0, scratch: Buffer.alloc(0), rows: [] }

function scratchFor(rowBytes) {
  if (scratchCache.rowBytes !== rowBytes) {
    const rowsPer = Math.max(1, Math.floor(MOVE_CHUNK / rowBytes))
    const scratch =
      scratchCache.scratch.length >= rowsPer * rowBytes
        ? scratchCache.scratch
        : Buffer.allocUnsafeSlow(rowsPer * rowBytes)
    const rows = Array.from({ length: rowsPer }, (_, r) => scratch.subarray(r * rowBytes, (r + 1) * rowBytes))
    scratchCache = { rowBytes, rowsPer, scratch, rows }
  }
  return scratchCache
}

/** Reads `length` bytes at file offset `at` into `bytes` from `into`, whole (else ESHRANK). */
function readExact(fd, bytes, into, length, at) {
  for (let done = 0; done < length; ) {
    const got = readSync(fd, bytes, into + done, length - done, at + done)
    if (got === 0) throw shrank()
    done += got
  }
}

/**
 * Where each row of each part of a group goes (part `b`'s row `r` to row `toRow[b][r]` of
 * part `toPart[b][r]`), or `undefined` unless the moves take every row of every part once
 * and fill every row once (then nothing is left unwritten in a fresh buffer).
 */
function groupDestinations({ bucketOf, rowOf, order }, counts) {
  const n = order.length
  const total = counts.reduce((a, b) => a + b, 0)
  if (n !== total || bucketOf.length !== n || rowOf.length !== n) return undefined
  const toPart = counts.map((c) => new Uint32Array(c))
  const toRow = counts.map((c) => new Uint32Array(c))
  const taken = counts.map((c) => new Uint8Array(c))
  const filled = counts.map((c) => new Uint8Array(c))
  for (let p = 0; p < n; p++) {
    const q = order[p]
    if (q >= n) return undefined
    const part = bucketOf[q]
    const row = rowOf[q]
    const into = bucketOf[p]
    const at = rowOf[p]
    if (part >= counts.length || into >= counts.length) return undefined
    if (row >= counts[part] || at >= counts[into] || taken[part][row] === 1 || filled[into][at] === 1)
      return undefined
    taken[part][row] = 1
    filled[into][at] = 1
    toPart[part][row] = into
    toRow[part][row] = at
  }
  return { toPart, toRow }
}

/**
 * A group's parts read, hashed and moved in one pass on this thread (issue #13): each part's
 * rows come off its file a chunk at a time into this thread's scratch, are hashed there
 * while in cache, and each is copied straight to its row, in its own part's buffer or
 * another's (one `set` from a view of the scratch made once: no allocation per row). The
 * cycle walk instead read the whole object, hashed it, then moved every row from a random
 * place in 16 MiB that had left the cache: about 7 ms of 512-byte rows per 16 MiB beside the
 * other thread's hashing, against about 2 ms this way when a batch's rows are in source
 * order (each chunk's rows then go to as many advancing places as the window has batches).
 * Nothing leaves before every part matched its digest: on a mismatch (or a failed read)
 * every part is read again as it is and goes back unmoved, so a damaged part fails its get
 * and no row of it reaches another part.
 */
function readGroupMoved(moves, requests, to) {
  const { rowBytes } = moves
  const { scratch, rows: scratchRows, rowsPer } = scratchFor(rowBytes)
  const buffers = requests.map(({ size, spare }) =>
    spare !== undefined ? Buffer.from(spare, 0, size) : Buffer.allocUnsafeSlow(size),
  )
  let matched = true
  try {
    requests.forEach(({ fd, size, rows }, b) => {
      const bytes = buffers[b]
      const { offset, count } = rows
      const hash = createHash('sha256')
      readExact(fd, bytes, 0, offset, 0)
      hash.update(bytes.subarray(0, offset))
      const toPart = to.toPart[b]
      const toRow = to.toRow[b]
      for (let first = 0; first < count; first += rowsPer) {
        const n = Math.min(rowsPer, count - first)
        readExact(fd, scratch, 0, n * rowBytes, offset + first * rowBytes)
        hash.update(scratch.subarray(0, n * rowBytes))
        for (let r = 0; r < n; r++) {
          const into = toPart[first + r]
          buffers[into].set(scratchRows[r], requests[into].rows.offset + toRow[first + r] * rowBytes)
        }
      }
      const end = offset + count * rowBytes
      readExact(fd, bytes, end, size - end, end)
      hash.update(bytes.subarray(end, size))
      const digest = new Uint8Array(hash.digest())
      requests[b].digest = digest
      if (digest.length !== rows.expect.length || !digest.every((x, i) => x === rows.expect[i]))
        matched = false
    })
  } catch {
    matched = false
  }
  if (matched) {
    for (const [b, q] of requests.entries())
      replyRead(q.id, buffers[b], q.digest, q.spare !== undefined, true)
    return
  }
  // The moved copies never leave: every part read again as it is (its get then checks it).
  for (const [b, q] of requests.entries()) readAsIs(q, buffers[b])
}

/** A part read as it is and sent back unmoved (or its error). */
function readAsIs({ id, fd, size, spare }, bytes) {
  try {
    const into = bytes ?? (spare !== undefined ? Buffer.from(spare, 0, size) : Buffer.allocUnsafeSlow(size))
    const hash = createHash('sha256')
    readWhole(fd, into, hash)
    replyRead(id, into, new Uint8Array(hash.digest()), spare !== undefined, false)
  } catch (error) {
    parentPort?.postMessage({ id, error: { message: String(error?.message), code: error?.code } })
  }
}

/**
 * Row groups being gathered (reads with `rows`), by group id: the parts read, hashed and
 * matched so far, held here until the last one is in; then the rows are moved across them
 * (`permuteRows`) and every part goes back. A part that does not match its digest, fails,
 * or a `release` from the caller gives the group up: its parts go back as read. A group
 * whose parts all fit `readGroupMoved` holds them unread (`waiting`) instead, and reads
 * them in one pass once the last is in.
 */
const groups = new Map()

/** A part's answer: its own buffer transferred back, a spare (shared) only named by its digest. */
function replyRead(id, bytes, digest, spare, moved) {
  if (spare) parentPort?.postMessage({ id, digest, moved })
  else parentPort?.postMessage({ id, buffer: bytes.buffer, digest, moved }, [bytes.buffer])
}

function groupOf(rows) {
  let group = groups.get(rows.group)
  if (group === undefined) {
    const { rowBytes, bucketOf, rowOf, order } = rows
    group = {
      parts: rows.parts,
      held: new Map(),
      /** Parts not read yet, held until every part is in to be read in one pass (`readGroupMoved`). */
      waiting: new Map(),
      reading: 0,
      // A group this thread never got the moves of (its first part went to a thread that died).
      broken: bucketOf === undefined,
      moves: bucketOf === undefined ? undefined : { rowBytes, bucketOf, rowOf, order },
    }
    groups.set(rows.group, group)
  }
  return group
}

/** Gives a group up: the parts held go back as read, and so will those still being read. */
function releaseGroup(key, group) {
  group.broken = true
  for (const part of group.held.values()) replyRead(part.id, part.bytes, part.digest, part.spare, false)
  group.held.clear()
  const waiting = [...group.waiting.values()]
  group.waiting.clear()
  for (const q of waiting) readAsIs(q)
  if (group.reading === 0) groups.delete(key)
}

/**
 * Whether every move stays inside its part's rows and takes each position's row once (a
 * permutation: else the cycle walk would copy one row twice and lose another), checked
 * before any row moves.
 */
function movesFit({ bucketOf, rowOf, order }, parts) {
  const n = order.length
  if (bucketOf.length !== n || rowOf.length !== n) return false
  const taken = new Uint8Array(n)
  for (let p = 0; p < n; p++) {
    const part = parts[bucketOf[p]]
    const q = order[p]
    if (part === undefined || rowOf[p] >= part.count || q >= n || taken[q] === 1) return false
    taken[q] = 1
  }
  return true
}

/** A part of a group read and hashed: held, or with the last part, the rows moved and all sent back. */
function partRead(rows, group, part) {
  group.reading--
  const matched =
    part.digest.length === rows.expect.length && part.digest.every((b, i) => b === rows.expect[i])
  if (group.broken || !matched) {
    // Never a row of an object that failed its digest moved into another's bytes.
    replyRead(part.id, part.bytes, part.digest, part.spare, false)
    if (!group.broken) releaseGroup(rows.group, group)
    else if (group.reading === 0 && group.held.size === 0) groups.delete(rows.group)
    return
  }
  group.held.set(rows.part, part)
  if (group.held.size < group.parts) return
  groups.delete(rows.group)
  const parts = Array.from({ length: group.parts }, (_, b) => group.held.get(b))
  if (!movesFit(group.moves, parts)) {
    for (const p of parts) replyRead(p.id, p.bytes, p.digest, p.spare, false)
    return
  }
  try {
    permuteRows({
      ...group.moves,
      buffers: parts.map((p) => p.bytes.buffer),
      offsets: parts.map((p) => p.bytes.byteOffset + p.offset),
    })
  } catch (error) {
    // Rows half moved are neither the object nor its order: every part fails.
    const message = { message: String(error?.message), code: error?.code }
    for (const p of parts) parentPort?.postMessage({ id: p.id, error: message })
    return
  }
  for (const p of parts) replyRead(p.id, p.bytes, p.digest, p.spare, true)
}

parentPort?.on(
  'message',
  async ({
    id,
    fd,
    size,
    offset,
    buffer,
    spare,
    shared,
    get: getRequest,
    cancel,
    permute,
    rows,
    release,
  }) => {
    if (release !== undefined) {
      const group = groups.get(release)
      if (group !== undefined) releaseGroup(release, group)
      return
    }
    if (permute !== undefined) {
      // Rows of a shuffled window, moved here instead of on the caller's thread; buffers that
      // are not shared were transferred and go back the same way.
      try {
        permuteRows(permute)
        const buffers = permute.buffers
        parentPort?.postMessage(
          { id, buffers },
          buffers.filter((b) => !(b instanceof SharedArrayBuffer)),
        )
      } catch (error) {
        parentPort?.postMessage({ id, error: { message: String(error?.message), code: error?.code } })
      }
      return
    }
    if (cancel === true) {
      gets.get(id)?.destroy(failure('ABORT_ERR', 'cancelled'))
      gets.delete(id)
      return
    }
    try {
      if (getRequest !== undefined) {
        if (getRequest.url.startsWith('http:') && !framed.has(origin(new URL(getRequest.url)).key))
          plainGet(id, getRequest, false, spare, shared === true)
        else get(id, getRequest, shared === true)
        return
      }
      if (buffer !== undefined) {
        // Bytes already read (an S3 body): hash them and hand them back (a shared buffer stays
        // where it is; only the digest goes back).
        const digest = new Uint8Array(
          createHash('sha256')
            .update(new Uint8Array(buffer, offset ?? 0, size ?? buffer.byteLength))
            .digest(),
        )
        if (buffer instanceof SharedArrayBuffer) parentPort?.postMessage({ id, digest })
        else parentPort?.postMessage({ id, buffer, digest }, [buffer])
        return
      }
      // A shared spare lent by the caller (at least `size` bytes), filled in place; else a
      // buffer of this object alone, transferred back.
      const group = rows === undefined ? undefined : groupOf(rows)
      if (group !== undefined) group.reading++
      let bytes
      try {
        // A group: each part held unread until all are in (a group of one part at once), then
        // all read, hashed and moved in one pass, unless a part must be read the old way (then
        // all are).
        if (group !== undefined) {
          const onePass =
            !group.broken &&
            group.moves !== undefined &&
            group.held.size === 0 &&
            group.reading === 1 &&
            (spare === undefined || spare.byteLength >= size) &&
            size <= SYNC_MAX &&
            rows.offset >= 0 &&
            rows.offset + rows.count * group.moves.rowBytes <= size
          if (onePass) {
            group.reading--
            group.waiting.set(rows.part, { id, fd, size, spare, rows })
            if (group.waiting.size < group.parts) return
            groups.delete(rows.group)
            const requests = Array.from({ length: group.parts }, (_, b) => group.waiting.get(b))
            group.waiting.clear()
            const to = groupDestinations(
              group.moves,
              requests.map((q) => q.rows.count),
            )
            if (to !== undefined) readGroupMoved(group.moves, requests, to)
            else for (const q of requests) readAsIs(q)
            return
          }
          // The parts waiting go the old way: read, hashed and held.
          for (const q of [...group.waiting.values()]) {
            if (!group.waiting.delete(q.rows.part)) continue
            const own =
              q.spare !== undefined ? Buffer.from(q.spare, 0, q.size) : Buffer.allocUnsafeSlow(q.size)
            const h = createHash('sha256')
            group.reading++
            try {
              readWhole(q.fd, own, h)
            } catch (error) {
              group.reading--
              parentPort?.postMessage({
                id: q.id,
                error: { message: String(error?.message), code: error?.code },
              })
              releaseGroup(q.rows.group, group)
              continue
            }
            partRead(q.rows, group, {
              id: q.id,
              bytes: own,
              digest: new Uint8Array(h.digest()),
              spare: q.spare !== undefined,
              offset: q.rows.offset,
              count: q.rows.count,
            })
          }
        }
        bytes = spare !== undefined ? Buffer.from(spare, 0, size) : Buffer.allocUnsafeSlow(size)
        const hash = createHash('sha256')
        if (size <= SYNC_MAX) readWhole(fd, bytes, hash)
        else await readChunked(fd, bytes, hash)
        const digest = new Uint8Array(hash.digest())
        // Hashed first, moved after: rows move only between objects that matched their digests.
        if (group === undefined) replyRead(id, bytes, digest, spare !== undefined, false)
        else
          partRead(rows, group, {
            id,
            bytes,
            digest,
            spare: spare !== undefined,
            offset: rows.offset,
            count: rows.count,
          })
      } catch (error) {
        if (group !== undefined && groups.get(rows.group) === group) {
          // The others go back as read (this part's own read failed).
          group.reading = Math.max(0, group.reading - 1)
          releaseGroup(rows.group, group)
        }
        throw error
      }
    } catch (error) {
      parentPort?.postMessage({ id, error: { message: String(error?.message), code: error?.code } })
    }
  },
)
