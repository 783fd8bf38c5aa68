/**
 * bench/TORTURE.md from a run's results: the machine, the date, the load, the table of
 * counts and each scenario's notes. A full run of every scenario writes it
 * (`pnpm torture`); `tsx src/report.ts <results.json>` writes it from a saved `--json` file.
 */
import { readFile, writeFile } from 'node:fs/promises'
import { cpus, totalmem } from 'node:os'
import { join } from 'node:path'
import { failed, REPO_ROOT, type Result } from './lib.js'

export interface RunRecord {
  slice: boolean
  seed: number
  seconds: number
  /** Load averages (1, 5, 15 min) at the start and at the end. */
  load: { start: number[]; end: number[] }
  date: string
  results: Result[]
}

const SCENARIOS: Record<string, string> = {
  'concurrent-append': 'writer processes appending one-record commits to one branch at once',
  'concurrent-cas': 'writer processes incrementing one counter ref by compare-and-swap at once',
  'sigkill-append': 'appending writers SIGKILLed at random moments and restarted',
  'sigkill-cas': 'incrementing writers SIGKILLed at random moments and restarted',
  'sigkill-ingest':
    '`dreamdb ingest` (the built CLI) SIGKILLed after its first commit, re-run, then finished',
  'sharded-ingest':
    'several `dreamdb ingest` processes of one dataset at once (shard claims), one SIGKILLed at random and replaced, until all exit; a last run finds nothing left',
  'lost-response': 'writers committing through a proxy that drops answers of applied requests (MinIO only)',
  'pid-namespaces':
    'incrementing writers each in its own PID namespace (all pid 1), some SIGKILLed (folder locks)',
  corruption:
    'a byte flipped, a truncation, an empty file or junk in an object or ref; every reader; heal by re-put',
  'stopped-server':
    'a MinIO of its own SIGSTOPped (then SIGCONT), then killed: every call typed, within its deadline',
  'merge-under-writers':
    'writers appending to a branch and its side branch while merger processes merge the side in again and again and are SIGKILLed at random; a last merge, then every acknowledged record once on the branch',
  'gc-under-writers':
    'GC with a short grace against concurrent appends, layer adds, aborted appends and their retries; fsck and reads after each round',
  'decoder-fuzz':
    "mutated manifests, refs and tree nodes through every decoder, and walks over mutated trees (the manifest suite's fuzz file, more mutants)",
}

export function renderMarkdown(run: RunRecord): string {
  const fmt = (l: number[]) => l.map((x) => x.toFixed(2)).join(' ')
  const lines = [
    '# Torture suite results',
    '',
    'Written by `pnpm torture` (a full run; `tools/torture`, issue 11). `tools/test.sh` runs',
    '`pnpm torture --slice`, the same scenarios at a smaller size, on every CI run. A run fails',
    '(exit 1) when any scenario counts a lost, duplicated, hung or untyped operation.',
    '',
    `- Date: ${run.date}; ${run.slice ? 'slice' : 'full run'}, seed ${run.seed} (\`pnpm torture --seed ${run.seed}\` repeats the random choices), ${Math.round(run.seconds)} s in all`,
    `- Machine: ${cpus().length} cores (${cpus()[0]?.model.trim() ?? 'unknown'}), ${Math.round(totalmem() / 2 ** 30)} GiB, shared with other work; load average ${fmt(run.load.start)} at the start, ${fmt(run.load.end)} at the end`,
    `- Outcome: ${run.results.some((r) => r.skipped === undefined && failed(r.counts)) ? '**FAILED**' : 'passed'}`,
    '',
    'Counts: **acked**, operations acknowledged (a writer fsynced "committed X" to its log, or',
    'the CLI printed the chunk committed, before anything else happened to it; for corruption,',
    'the damaged objects a re-put should heal); **lost**, acknowledged but absent from the final',
    'state (or not healed); **dup**, a record, anchor or increment there twice; **hangs**, calls',
    'or processes past their deadline; **typed**, failures with a DreamDB `ERR_*` code (the',
    "expected outcome of a fault); **untyped**, failures without one (the CLI's exit 70).",
    '',
    '| scenario | backend | acked | lost | dup | hangs | typed | untyped | seconds |',
    '| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for (const r of run.results) {
    if (r.skipped !== undefined) {
      lines.push(`| ${r.scenario} | ${r.backend} | skipped: ${r.skipped} | | | | | | |`)
      continue
    }
    const c = r.counts
    lines.push(
      `| ${r.scenario} | ${r.backend} | ${c.acknowledged} | ${c.lost} | ${c.duplicated} | ${c.hangs} | ${c.typed} | ${c.untyped} | ${r.seconds.toFixed(1)} |`,
    )
  }
  lines.push('', '## Scenarios and what each run saw', '')
  let last = ''
  for (const r of run.results) {
    if (r.scenario !== last) {
      lines.push(`### ${r.scenario}`, '', `${SCENARIOS[r.scenario] ?? ''}.`, '')
      last = r.scenario
    }
    lines.push(`- ${r.backend}${r.skipped !== undefined ? `: skipped (${r.skipped})` : ''}`)
    for (const note of r.notes) lines.push(`  - ${note.replaceAll('|', '\\|')}`)
  }
  lines.push('')
  return lines.join('\n')
}

export async function writeReport(
  run: RunRecord,
  path = join(REPO_ROOT, 'bench', 'TORTURE.md'),
): Promise<string> {
  await writeFile(path, renderMarkdown(run))
  return path
}

if (process.argv[1]?.endsWith('report.ts')) {
  const file = process.argv[2]
  if (!file) throw new Error('usage: tsx src/report.ts <results.json>')
  const run = JSON.parse(await readFile(file, 'utf8')) as RunRecord
  console.log(`wrote ${await writeReport(run)}`)
}
