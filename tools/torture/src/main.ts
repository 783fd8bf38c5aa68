/**
 * The torture suite (issue 11): `pnpm torture` runs it in full, `pnpm torture --slice` a
 * bounded slice (the one `tools/test.sh` runs). Both run inside a MinIO of their own
 * (tools/minio/minio.sh); without one the MinIO rows are skipped, or fail under CI=true.
 *
 *   --slice              the short run
 *   --only a,b           only scenarios whose names contain one of these
 *   --backend folder     only the folder store (or: minio)
 *   --seed N             the random seed (printed by every run)
 *   --json FILE          also write the results as JSON
 *   TORTURE_KEEP=1       keep each folder store (its path is printed) to look into a failure
 *
 * A full run of every scenario on both backends also writes bench/TORTURE.md.
 * Prints a table of counts per scenario and backend, and exits 1 when any scenario lost,
 * duplicated, hung or failed untyped.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { CLI_DIST, failed, folderTarget, minioTarget, prng, type Result, type Target, zero } from './lib.js'
import { type RunRecord, writeReport } from './report.js'
import { corruption } from './scenarios/corruption.js'
import { decoderFuzz } from './scenarios/fuzz.js'
import { gcUnderWriters } from './scenarios/gc.js'
import { ingestKills } from './scenarios/ingest.js'
import { lostResponses } from './scenarios/lost-response.js'
import { mergeUnderWriters } from './scenarios/merge.js'
import { pidNamespaces } from './scenarios/pid-namespaces.js'
import { shardedIngestKills } from './scenarios/sharded-ingest.js'
import { stoppedServer } from './scenarios/stopped-server.js'
import { writers } from './scenarios/writers.js'

const args = process.argv.slice(2)
const flag = (name: string) => args.includes(name)
const option = (name: string) => {
  const at = args.indexOf(name)
  return at === -1 ? undefined : args[at + 1]
}
const slice = flag('--slice')
const only = option('--only')?.split(',')
const onlyBackend = option('--backend')
const seed = Number(option('--seed') ?? Math.floor(Math.random() * 2 ** 31))
const jsonOut = option('--json')
const random = prng(seed)
const endpoint = process.env.DREAMDB_TEST_S3_ENDPOINT || undefined
if (endpoint === undefined && process.env.CI === 'true') {
  console.error('torture: CI=true but DREAMDB_TEST_S3_ENDPOINT is not set: run it through pnpm torture')
  process.exit(1)
}

/** The sizes of a run: the slice keeps the whole suite to a few minutes on two cores. */
const size = slice
  ? {
      writers: { processes: 4, commits: 6 },
      cas: { processes: 4, commits: 10 },
      killAppend: { processes: 2, generations: 3, killWindowMs: 2500 },
      killCas: { processes: 2, generations: 3, killWindowMs: 1500 },
      ingest: { shards: 2, rows: 80, batch: 3, kills: 3 },
      lost: { processes: 3, commits: 10, drop: 0.2 },
      pidns: { processes: 3, commits: 10, kills: 1 },
      corruption: { cases: 24 },
      stopped: { timeoutMs: 1500 },
      gc: { rounds: 2, appends: 8, layers: 6, aborts: 4 },
      fuzz: { mutants: 40_000 },
      shardedIngest: { processes: 2, shards: 4, rows: 60, batch: 5, kills: 2 },
      merge: { writers: 1, commits: 8, mergers: 3, killWindowMs: 1500 },
    }
  : {
      writers: { processes: 8, commits: 25 },
      cas: { processes: 8, commits: 40 },
      killAppend: { processes: 3, generations: 12, killWindowMs: 3000 },
      killCas: { processes: 3, generations: 12, killWindowMs: 2000 },
      ingest: { shards: 3, rows: 150, batch: 3, kills: 10 },
      lost: { processes: 5, commits: 30, drop: 0.25 },
      pidns: { processes: 4, commits: 40, kills: 3 },
      corruption: { cases: 200 },
      stopped: { timeoutMs: 2000 },
      // gc: 4 rounds of 3-5 x the dataset suite's race (5 x 10 x took 156 s on a folder at load 13);
      // fuzz: 3 x the mutants the manifest suite ran.
      gc: { rounds: 4, appends: 20, layers: 12, aborts: 10 },
      fuzz: { mutants: 300_000 },
      shardedIngest: { processes: 3, shards: 6, rows: 150, batch: 5, kills: 8 },
      merge: { writers: 2, commits: 30, mergers: 8, killWindowMs: 2000 },
    }

interface Scenario {
  name: string
  backends: ('folder' | 'minio')[]
  /** False: full runs only (the test suite already runs a short form on every CI run). */
  slice?: boolean
  run(target: Target, logDir: string): Promise<Result>
}

const deadline = 240_000
const scenarios: Scenario[] = [
  {
    name: 'concurrent-append',
    backends: ['folder', 'minio'],
    run: (t, d) =>
      writers('concurrent-append', t, d, {
        mode: 'append',
        ...size.writers,
        random,
        workerDeadlineMs: deadline,
      }),
  },
  {
    name: 'concurrent-cas',
    backends: ['folder', 'minio'],
    run: (t, d) =>
      writers('concurrent-cas', t, d, { mode: 'cas', ...size.cas, random, workerDeadlineMs: deadline }),
  },
  {
    name: 'sigkill-append',
    backends: ['folder', 'minio'],
    run: (t, d) =>
      writers('sigkill-append', t, d, {
        mode: 'append',
        processes: size.killAppend.processes,
        commits: 0,
        kills: size.killAppend,
        random,
        workerDeadlineMs: deadline,
      }),
  },
  {
    name: 'sigkill-cas',
    backends: ['folder', 'minio'],
    run: (t, d) =>
      writers('sigkill-cas', t, d, {
        mode: 'cas',
        processes: size.killCas.processes,
        commits: 0,
        kills: size.killCas,
        random,
        workerDeadlineMs: deadline,
      }),
  },
  {
    name: 'sigkill-ingest',
    backends: ['folder', 'minio'],
    run: (t, d) => ingestKills(t, d, { ...size.ingest, random }),
  },
  {
    name: 'lost-response',
    backends: ['minio'],
    run: (t, d) => lostResponses(t, d, { ...size.lost, random }),
  },
  {
    name: 'pid-namespaces',
    backends: ['folder'],
    run: (t, d) => pidNamespaces(t, d, { ...size.pidns, random }),
  },
  {
    name: 'corruption',
    backends: ['folder', 'minio'],
    run: (t, d) => corruption(t, d, { ...size.corruption, random }),
  },
  {
    name: 'stopped-server',
    backends: ['minio'],
    run: (t, d) => stoppedServer(t, d, size.stopped),
  },
  {
    name: 'sharded-ingest',
    backends: ['folder', 'minio'],
    run: (t, d) => shardedIngestKills(t, d, { ...size.shardedIngest, random }),
  },
  {
    name: 'merge-under-writers',
    backends: ['folder', 'minio'],
    run: (t, d) => mergeUnderWriters(t, d, { ...size.merge, random, workerDeadlineMs: deadline }),
  },
  {
    name: 'gc-under-writers',
    backends: ['folder', 'minio'],
    slice: false,
    run: (t) => gcUnderWriters(t, size.gc),
  },
  {
    name: 'decoder-fuzz',
    backends: ['folder'],
    slice: false,
    run: (t) => decoderFuzz(t, size.fuzz),
  },
]

function table(results: Result[]): string {
  const head = ['scenario', 'backend', 'acked', 'lost', 'dup', 'hangs', 'typed', 'untyped', 'seconds', '']
  const rows = results.map((r) =>
    r.skipped !== undefined
      ? [r.scenario, r.backend, '-', '-', '-', '-', '-', '-', '-', `SKIPPED: ${r.skipped}`]
      : [
          r.scenario,
          r.backend,
          String(r.counts.acknowledged),
          String(r.counts.lost),
          String(r.counts.duplicated),
          String(r.counts.hangs),
          String(r.counts.typed),
          String(r.counts.untyped),
          r.seconds.toFixed(1),
          failed(r.counts) ? 'FAIL' : 'ok',
        ],
  )
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i < 2 || i === cells.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
  return [line(head), ...rows.map(line)].join('\n').replace(/ +$/gm, '')
}

const started = Date.now()
const date = new Date().toISOString()
const loadStart = loadavg()
const logDir = await mkdtemp(join(tmpdir(), 'dreamdb-torture-logs-'))
console.log(
  `torture: ${slice ? 'slice' : 'full run'}, seed ${seed}, ${cpus().length} cores, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}, MinIO ${endpoint ?? 'none (its rows are skipped)'}, CLI ${CLI_DIST}`,
)
const results: Result[] = []
for (const scenario of scenarios) {
  if (only && !only.some((o) => scenario.name.includes(o))) continue
  if (slice && scenario.slice === false && !only) continue
  for (const backend of scenario.backends) {
    if (onlyBackend && backend !== onlyBackend) continue
    if (backend === 'minio' && endpoint === undefined) {
      results.push({
        scenario: scenario.name,
        backend,
        counts: zero(),
        seconds: 0,
        skipped: 'no MinIO',
        notes: [],
      })
      continue
    }
    const target = backend === 'folder' ? await folderTarget() : await minioTarget(endpoint!)
    const t0 = Date.now()
    let result: Result
    try {
      result = await scenario.run(target, logDir)
    } catch (error) {
      // A scenario that throws is a failure of the suite or the system: count it untyped.
      const counts = zero()
      counts.untyped = 1
      result = {
        scenario: scenario.name,
        backend,
        counts,
        seconds: (Date.now() - t0) / 1000,
        notes: [
          `the scenario itself failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`,
        ],
      }
    } finally {
      await target.cleanup()
    }
    results.push(result)
    const status =
      result.skipped !== undefined ? `SKIPPED (${result.skipped})` : failed(result.counts) ? 'FAIL' : 'ok'
    console.log(
      `${scenario.name} on ${backend}: ${status} in ${result.seconds.toFixed(1)} s ${JSON.stringify(result.counts)}`,
    )
    for (const note of result.notes) console.log(`  ${note}`)
  }
}
await rm(logDir, { recursive: true, force: true })
const seconds = (Date.now() - started) / 1000
console.log(`\n${table(results)}`)
const bad = results.filter((r) => r.skipped === undefined && failed(r.counts))
console.log(
  `\ntorture: ${bad.length === 0 ? 'passed' : `FAILED (${bad.map((r) => `${r.scenario}/${r.backend}`).join(', ')})`} in ${seconds.toFixed(0)} s, seed ${seed}, load ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}`,
)
const record: RunRecord = { slice, seed, seconds, load: { start: loadStart, end: loadavg() }, date, results }
if (jsonOut !== undefined) await writeFile(jsonOut, `${JSON.stringify(record, null, 2)}\n`)
if (!slice && only === undefined && onlyBackend === undefined && endpoint !== undefined) {
  console.log(`torture: wrote ${await writeReport(record)}`)
}
process.exit(bad.length === 0 ? 0 : 1)
