/**
 * The viewer (`dreamdb ui`, issue 17) in headless Chromium on a 1-million-record dataset in a
 * folder: time to first paint of the records grid and of the sweep comparison view (4 runs),
 * cold (a fresh `dreamdb ui` process on the existing dataset, its first request) and warm,
 * and per page of 100 images, against a plain static server handing the same 100 PNGs to the
 * same browser from a folder (the baseline), alternated round by round.
 *
 * `pnpm bench ui [--records N] [--rounds R] [--prof DIR]` (default 1 000 000 records, 5
 * rounds; `--prof` writes the viewer processes' CPU profiles there). The dataset is built once
 * into the cache folder (~/.cache/dreamdb/bench/ui-N) and reused. Needs the built CLI
 * (`pnpm --filter @dreamdb/cli build`) and a Chromium (Debian's /usr/bin/chromium, or
 * CHROMIUM_PATH).
 */
/// <reference lib="dom" />
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { loadavg } from 'node:os'
import { join } from 'node:path'
import puppeteer from 'puppeteer-core'
import { webImage } from '../apps/cli/src/ui/images.js'
import { BIG_RUNS, bigPgm, ensureBigStore } from '../apps/cli/test/big-store.js'
import { BENCH_DIR, describeMachine, machineInfo, markdownTable, median, writeResults } from './_harness.js'

const arg = (name: string, fallback: number) => {
  const at = process.argv.indexOf(`--${name}`)
  return at < 0 ? fallback : Number(process.argv[at + 1])
}
const RECORDS = arg('records', 1_000_000)
const ROUNDS = arg('rounds', 5)
const PROF = (() => {
  const at = process.argv.indexOf('--prof')
  return at < 0 ? undefined : process.argv[at + 1]
})()
const PAGE = 100
const CLI = join(BENCH_DIR, '..', 'apps', 'cli', 'dist', 'index.js')
const { work: WORK, store: STORE, builtSeconds: buildSeconds } = await ensureBigStore(RECORDS)

const load = () =>
  loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')

interface Viewer {
  url: string
  child: ChildProcess
  /** CPU seconds (user + system) the process has used so far. */
  cpu(): number
  stop(): Promise<void>
}

const TICK = 100 // USER_HZ on Linux
let served = 0

/** A fresh `dreamdb ui` process on the store; resolves once it listens. */
function startViewer(): Promise<Viewer> {
  const prof = PROF
    ? ['--cpu-prof', '--cpu-prof-dir', PROF, '--cpu-prof-name', `ui-${++served}.cpuprofile`]
    : []
  const child = spawn(process.execPath, [...prof, CLI, 'ui', '--backend', STORE, '--port', '0', '--json'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const cpu = () => {
    const fields = readFileSync(`/proc/${child.pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
    return (Number(fields[11]) + Number(fields[12])) / TICK
  }
  const stop = () =>
    new Promise<void>((resolve) => {
      child.once('exit', () => resolve())
      child.kill('SIGINT')
    })
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout!.on('data', (c: Buffer) => {
      out += c
      try {
        resolve({ url: (JSON.parse(out) as { url: string }).url, child, cpu, stop })
      } catch {}
    })
    child.once('exit', (code) => reject(new Error(`dreamdb ui exited ${code}`)))
  })
}

if (!existsSync(CLI) || !existsSync(join(CLI, '..', 'ui', 'app.js')))
  throw new Error('the CLI is not built: pnpm --filter @dreamdb/cli build')
if (buildSeconds !== undefined) console.log(`built in ${buildSeconds.toFixed(1)} s (load ${load()})`)
if (PROF) await mkdir(PROF, { recursive: true })

// The baseline: the same 100 images (as the PNGs the viewer sends) from a folder, by a
// plain static server, in a page of 100 <img>.
const folder = join(WORK, 'folder')
await mkdir(folder, { recursive: true })
for (let i = 0; i < PAGE; i++) await writeFile(join(folder, `${i}.png`), webImage(bigPgm(i)).bytes)
const staticServer = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://x')
  if (url.pathname === '/') {
    res.writeHead(200, { 'content-type': 'text/html' })
    res.end(
      `<!doctype html><body>${Array.from({ length: PAGE }, (_, i) => `<img src="/${i}.png?r=${url.searchParams.get('r')}" width=132 height=132>`).join('')}</body>`,
    )
    return
  }
  const name = url.pathname.slice(1)
  if (!/^\d+\.png$/.test(name)) return void res.writeHead(404).end()
  void readFile(join(folder, name)).then((bytes) => {
    res.writeHead(200, { 'content-type': 'image/png' })
    res.end(bytes)
  })
})
await new Promise<void>((r) => staticServer.listen(0, '127.0.0.1', () => r()))
const staticUrl = `http://127.0.0.1:${(staticServer.address() as AddressInfo).port}/`

const executablePath = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
  (p) => p && existsSync(p),
)
if (!executablePath) throw new Error('no Chromium: apt-get install chromium, or set CHROMIUM_PATH')
const browser = await puppeteer.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu'],
})
const page = await browser.newPage()
await page.setViewport({ width: 1280, height: 800 })
await page.setCacheEnabled(false)

// Measured inside the page, so the figures hold no DevTools round trips: every frame checks
// the condition; once it holds, the time at the next frame (the one before has painted it)
// goes to window.__paintedAt (ms since navigation start). The page's code is plain JavaScript source:
// tsx would wrap functions in a helper that the page lacks.
const IMAGES_DONE = '[...document.images].every((i) => i.complete)'
await page.evaluateOnNewDocument(`(() => {
  const holds = () => {
    if (window.__until) return window.__until()
    const app = document.getElementById('main') !== null
    const ready = app ? (document.body.dataset.state ?? '').startsWith('ready:') : document.readyState === 'complete'
    return ready && ${IMAGES_DONE}
  }
  let held = false
  const frame = () => {
    if (window.__paintedAt === undefined) {
      if (held) window.__paintedAt = performance.now()
      else held = holds()
    } else held = false
    requestAnimationFrame(frame)
  }
  requestAnimationFrame(frame)
})()`)

/** Starts a measurement in the page: click `click`, then `until` (JavaScript) must hold. */
async function clickAndWatch(click: string, until: string): Promise<void> {
  await page.evaluate(`(() => {
    const first = () => document.querySelector('[data-testid=card]')?.dataset.position
    const before = first()
    // The app must have reacted: its state attribute changed after the click.
    let changed = false
    new MutationObserver(() => {
      changed = true
    }).observe(document.body, { attributes: true, attributeFilter: ['data-state'] })
    window.__until = () => changed && (${until}) && ${IMAGES_DONE}
    window.__paintedAt = undefined
    window.__t0 = performance.now()
    document.querySelector(${JSON.stringify(click)}).click()
  })()`)
}

/** Milliseconds from navigation start (or `__t0`) to the painted frame, once there is one. */
async function painted(): Promise<number> {
  await page.waitForFunction("window.__paintedAt !== undefined || document.body?.dataset.state === 'error'", {
    timeout: 300_000,
    polling: 50,
  })
  if ((await page.evaluate('document.body.dataset.state')) === 'error') {
    throw new Error(String(await page.evaluate("document.querySelector('[data-testid=error]')?.textContent")))
  }
  return Number(await page.evaluate('window.__paintedAt - (window.__t0 ?? 0)'))
}

interface Sample {
  ms: number
  /** CPU seconds the viewer process spent on it. */
  cpu: number
}

/** From navigation start to the view drawn and its images decoded and painted, in a fresh page. */
async function firstPaint(viewer: Viewer, hash: string): Promise<Sample> {
  await page.goto('about:blank')
  const cpu = viewer.cpu()
  await page.goto(new URL(hash, viewer.url).href, { waitUntil: 'domcontentloaded' })
  const ms = await painted()
  return { ms, cpu: viewer.cpu() - cpu }
}

const gridHash = (offset: number) => `#/records?ref=big&limit=${PAGE}&offset=${offset}`
const middle = Math.floor(RECORDS / 2)
/** Offsets no earlier round read (so no page comes from a cache). */
let fresh = 0
const nextOffset = () => (++fresh * 99_991 + 12_345) % Math.max(1, RECORDS - PAGE)

const gridCold: Sample[] = []
const gridWarm: Sample[] = []
const compareCold: Sample[] = []
const compareWarm: Sample[] = []
const clicks: Sample[] = []
const turns: Sample[] = []
const pages: Sample[] = []
const baseline: number[] = []
const loads: Record<string, string> = {}

async function staticPage(round: number): Promise<number> {
  await page.goto('about:blank')
  await page.goto(`${staticUrl}?r=${round}`, { waitUntil: 'domcontentloaded' })
  return await painted()
}

for (let r = 0; r < ROUNDS; r++) {
  // Cold grid: a fresh process, its first request is the records grid.
  let viewer = await startViewer()
  gridCold.push(await firstPaint(viewer, gridHash(r === 0 ? middle : nextOffset())))
  loads.gridCold = load()
  gridWarm.push(await firstPaint(viewer, gridHash(nextOffset())))
  // A page turned in the app: from the click on 'next' until the next 100 images are painted.
  {
    const cpu = viewer.cpu()
    await clickAndWatch(
      '[data-testid=next]',
      "document.body.dataset.state === 'ready:records' && first() !== before",
    )
    turns.push({ ms: await painted(), cpu: viewer.cpu() - cpu })
  }
  // A page of 100 by navigation, then the static server's 100 PNG files (alternated order).
  if (r % 2 === 0) {
    pages.push(await firstPaint(viewer, gridHash(nextOffset())))
    baseline.push(await staticPage(r))
  } else {
    baseline.push(await staticPage(r))
    pages.push(await firstPaint(viewer, gridHash(nextOffset())))
  }
  loads.pages = load()
  await viewer.stop()
  // Cold comparison: a fresh process, its first request is the comparison of the 4 runs.
  viewer = await startViewer()
  compareCold.push(await firstPaint(viewer, '#/compare?prefix=sweep/'))
  loads.compareCold = load()
  compareWarm.push(await firstPaint(viewer, '#/compare?prefix=sweep/'))
  // A heat-map cell clicked: 24 records where two runs disagree, with their images.
  {
    const cpu = viewer.cpu()
    await clickAndWatch(
      `[data-testid=cell][data-i="${r % 4}"][data-j="${(r + 1) % 4}"]`,
      "document.body.dataset.state === 'ready:disagreements'",
    )
    clicks.push({ ms: await painted(), cpu: viewer.cpu() - cpu })
  }
  await viewer.stop()
  const f = (s: Sample) => `${Math.round(s.ms)} ms (cpu ${(s.cpu * 1000).toFixed(0)})`
  console.log(
    `round ${r + 1}: grid cold ${f(gridCold.at(-1)!)} warm ${f(gridWarm.at(-1)!)} turn ${f(turns.at(-1)!)}; ` +
      `compare cold ${f(compareCold.at(-1)!)} cached ${f(compareWarm.at(-1)!)} click ${f(clicks.at(-1)!)}; ` +
      `page ${f(pages.at(-1)!)} static ${Math.round(baseline.at(-1)!)} ms; load ${load()}`,
  )
}

// The other views in one more process: each view's first opening, then ROUNDS times.
const others: { what: string; cold: Sample; warm: Sample[]; load: string }[] = []
{
  const viewer = await startViewer()
  for (const [what, hash] of [
    ['refs and the manifest DAG', '#/refs'],
    [
      `records filtered label=3, 48 of them from offset ${middle.toLocaleString('en')}`,
      `#/records?ref=big&filter=label%3D3&from=${middle}`,
    ],
    [
      `a record (position ${middle.toLocaleString('en')}) with every field`,
      `#/record?ref=big&position=${middle}`,
    ],
    [
      'inspect (splits counted over every record) and a diff of two runs',
      '#/inspect?ref=big&a=sweep/a&b=sweep/b',
    ],
    [
      `24 nearest records (exact scan of ${RECORDS.toLocaleString('en')} 8-d vectors)`,
      `#/similar?ref=big&position=${middle}`,
    ],
  ] as const) {
    const cold = await firstPaint(viewer, hash)
    const warm: Sample[] = []
    for (let r = 0; r < ROUNDS; r++) warm.push(await firstPaint(viewer, hash))
    others.push({ what, cold, warm, load: load() })
    console.log(
      what,
      Math.round(cold.ms),
      warm.map((s) => Math.round(s.ms)),
    )
  }
  await viewer.stop()
}
await browser.close()
staticServer.close()

const date = new Date()
const machine = machineInfo(date)
const ms = (x: number) => `${Math.round(x)} ms`
const med = (s: Sample[]) => median(s.map((x) => x.ms))
const cpu = (s: Sample[]) => `${(median(s.map((x) => x.cpu)) * 1000).toFixed(0)} ms`
const range = (s: Sample[]) =>
  `${Math.round(Math.min(...s.map((x) => x.ms)))}-${Math.round(Math.max(...s.map((x) => x.ms)))} ms`
const verdict = (s: Sample[], goal: number) => (med(s) < goal ? 'met' : 'missed')
const section = `## ui: the viewer in headless Chromium (issue 17)

${date.toISOString().slice(0, 10)}, ${describeMachine(machine)}. A folder store of
${RECORDS.toLocaleString('en')} records (a 16x16 PGM image served as PNG, label, split, an 8-d embedding),
appended 65 536 at a time with the default bucket sizing, and ${BIG_RUNS.length} sweep branches with a
\`prediction\` layer over every record. Debian's Chromium 1280x800 through puppeteer-core, cache
off. Each figure is timed inside the page (no DevTools round trips in it): from navigation
start (or the click) to the first frame painted after the view was drawn and all its images
had loaded; each frame checks. **Cold**: a fresh \`dreamdb ui\` process (the built CLI) on the existing dataset, its
first request; one new process per round and view. **Warm**: the same process, a page at an
offset no earlier request read (grid) or the same comparison again (its cache). Medians of
${ROUNDS} rounds, the range beside them; "server CPU" is the viewer process's user + system
time for the figure (median). Load average (1, 5, 15 min) in the last column.

${markdownTable(
  ['what', 'median', 'range', 'server CPU', 'goal', 'load'],
  [
    [
      `records grid, ${PAGE} records with images, cold`,
      ms(med(gridCold)),
      range(gridCold),
      cpu(gridCold),
      `< 1 s: ${verdict(gridCold, 1000)}`,
      loads.gridCold!,
    ],
    [
      `records grid, ${PAGE} records with images, warm`,
      ms(med(gridWarm)),
      range(gridWarm),
      cpu(gridWarm),
      `< 1 s: ${verdict(gridWarm, 1000)}`,
      loads.gridCold!,
    ],
    [
      `comparison view, ${BIG_RUNS.length} runs × ${RECORDS.toLocaleString('en')} records, cold`,
      ms(med(compareCold)),
      range(compareCold),
      cpu(compareCold),
      `< 1 s: ${verdict(compareCold, 1000)}`,
      loads.compareCold!,
    ],
    [
      'comparison view, cached',
      ms(med(compareWarm)),
      range(compareWarm),
      cpu(compareWarm),
      `< 1 s: ${verdict(compareWarm, 1000)}`,
      loads.compareCold!,
    ],
    [
      'a heat-map cell clicked → 24 disagreeing records with images',
      ms(med(clicks)),
      range(clicks),
      cpu(clicks),
      '',
      loads.compareCold!,
    ],
    [
      `a page of ${PAGE} images turned in the app ('next')`,
      ms(med(turns)),
      range(turns),
      cpu(turns),
      `< 200 ms: ${verdict(turns, 200)}`,
      loads.pages!,
    ],
    [
      `a page of ${PAGE} images by navigation (page, app, API, images)`,
      ms(med(pages)),
      range(pages),
      cpu(pages),
      '',
      loads.pages!,
    ],
    [
      `baseline: ${PAGE} PNG files from a folder by navigation, plain static server`,
      ms(median(baseline)),
      `${Math.round(Math.min(...baseline))}-${Math.round(Math.max(...baseline))} ms`,
      '',
      '',
      loads.pages!,
    ],
    ...others.map((o) => [
      `${o.what} (first / again)`,
      `${ms(o.cold.ms)} / ${ms(med(o.warm))}`,
      range(o.warm),
      cpu(o.warm),
      '',
      o.load,
    ]),
  ],
)}

Per page of ${PAGE} by navigation: viewer/baseline ${(med(pages) / median(baseline)).toFixed(2)}x (medians
of ${ROUNDS} alternated rounds).
`
console.log(section)
await writeResults(
  'ui',
  date,
  {
    machine,
    records: RECORDS,
    buildSeconds,
    gridCold,
    gridWarm,
    compareCold,
    compareWarm,
    clicks,
    turns,
    pages,
    baseline,
    others,
    loads,
  },
  section,
)
process.exit(0)
