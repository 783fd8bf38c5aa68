/**
 * On a terminal: the Ink heat map with colour, and no colour with NO_COLOR or --no-color.
 * The CLI runs in a pseudo-terminal made by `script` (util-linux); skipped where it is missing.
 */
import { spawnSync } from 'node:child_process'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  CLI_ROOT,
  cleanEnv,
  DIST_ENTRY,
  hasDist,
  PROCESS_ARGV,
  prepareStore,
  SWEEP,
  tempDir,
} from './helpers.js'
import { writeSplit } from './shards.js'

const hasScript = spawnSync('script', ['--version'], { encoding: 'utf8' }).status === 0
const ESC = String.fromCharCode(27)
const SGR = new RegExp(`${ESC}\\[[0-9;]*m`)
const BACKGROUND = new RegExp(`${ESC}\\[(4[0-7]|10[0-7]|48;[25];[0-9;]+)m`)
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`

let dir: { path: string; remove: () => Promise<void> }

/**
 * Run `dreamdb ...args` on a pseudo-terminal of `columns` columns; stdout and stderr merge.
 * `argv`: how the CLI starts (the built binary when current, else the sources).
 */
function onTerminal(args: string[], env: Record<string, string> = {}, columns = 100, argv = PROCESS_ARGV) {
  const command = [process.execPath, ...argv, ...args].map(quote).join(' ')
  const result = spawnSync('script', ['-qec', `stty cols ${columns} rows 50; ${command}`, '/dev/null'], {
    cwd: dir.path,
    encoding: 'utf8',
    env: cleanEnv({ TERM: 'xterm-256color', TSX_TSCONFIG_PATH: join(CLI_ROOT, 'tsconfig.json'), ...env }),
    timeout: 60_000,
  })
  return { code: result.status, output: result.stdout.replace(/\r\n/g, '\n') }
}
const plain = (s: string) => s.replace(new RegExp(`${ESC}\\[[0-9;?]*[A-Za-z]`, 'g'), '')

describe.skipIf(!hasScript)('on a terminal', () => {
  beforeAll(async () => {
    dir = await tempDir()
    await prepareStore(dir.path)
  })
  afterAll(async () => dir?.remove())

  it('draws the Ink heat map in colour', () => {
    const { code, output } = onTerminal(['compare-refs', '--refs', SWEEP.join(','), '--field', 'prediction'])
    expect(code).toBe(0)
    expect(output).toMatch(SGR)
    // A background colour on the heat cells.
    expect(output).toMatch(BACKGROUND)
    const text = plain(output)
    expect(text).toContain("'prediction' agreement across 3 refs")
    expect(text).toMatch(/A lr0\.001 +— /)
    for (const ref of SWEEP) expect(text).toContain(ref)
  })

  it('uses no colour with NO_COLOR or --no-color, but the same view', () => {
    for (const [args, env] of [
      [[], { NO_COLOR: '1' }],
      [['--no-color'], {}],
    ] as const) {
      const { code, output } = onTerminal(['compare-refs', '--prefix', 'sweep/', ...args], env)
      expect(code).toBe(0)
      expect(output).not.toMatch(SGR)
      expect(plain(output)).toMatch(/A lr0\.001 +— /)
    }
  })

  it('colours plain text and errors only without NO_COLOR', () => {
    expect(onTerminal(['refs']).output).toMatch(SGR)
    expect(onTerminal(['refs'], { NO_COLOR: '1' }).output).not.toContain(ESC)
    const error = onTerminal(['inspect', 'nope'])
    expect(error.code).toBe(3)
    expect(error.output).toMatch(SGR)
    const uncoloured = onTerminal(['inspect', 'nope'], { NO_COLOR: '1' })
    expect(uncoloured.output).not.toContain(ESC)
    expect(uncoloured.output.trim()).toMatch(
      /^dreamdb: ERR_MANIFEST_REF_NOT_FOUND: .*\(hint: dreamdb refs lists them\)$/,
    )
  })

  it('fits the matrix to a narrow terminal and lists pairs when it cannot', () => {
    const { output } = onTerminal(['compare-refs', '--prefix', 'sweep/', '--no-color'], {}, 40)
    const lines = plain(output).trimEnd().split('\n')
    for (const line of lines) expect(line.trimEnd().length).toBeLessThanOrEqual(40)
  })
})

describe.skipIf(!hasScript)('ingest on a terminal', () => {
  beforeAll(async () => {
    await writeSplit(join(dir.path, 'hf'), { split: 'train', shards: 2, rows: 20, first: 0 })
  })

  it('draws an Ink progress bar with rate and ETA, then the summary', () => {
    const { code, output } = onTerminal([
      'ingest',
      '--root',
      'hf',
      '--dataset-name',
      'tty',
      '--splits',
      'train',
      '--backend',
      'store-tty',
      '--batch-records',
      '5',
    ])
    expect(code).toBe(0)
    const text = plain(output)
    expect(text).toContain('ingest tty')
    expect(text).toMatch(/█+ +100%/)
    expect(text).toMatch(/40\/40 records {2}[\d,]+ rec\/s {2}.+\/s {2}in \d+:\d\d/)
    expect(text).toMatch(/committed train data\/train-0000[01]-of-00002\.parquet rows \d+-\d+/)
    expect(text).toMatch(/^ingested 40 records .* into 'tty' \(created\)/m)
    // Colour on a terminal (the bar), none with NO_COLOR.
    expect(output).toMatch(SGR)
    const uncoloured = onTerminal(
      ['ingest', '--root', 'hf', '--dataset-name', 'tty2', '--splits', 'train', '--backend', 'store-tty'],
      { NO_COLOR: '1' },
    )
    expect(uncoloured.code).toBe(0)
    expect(uncoloured.output).not.toMatch(SGR)
    expect(plain(uncoloured.output)).toMatch(/█+ +100%/)
  })
})

// Ink and React are bundled into the binary (tsup.config.ts), where they behave unlike their
// node_modules copies (a dynamic import('react') gives only its CommonJS default): the Ink views
// from the built binary itself, even when the tests above run the sources.
describe.skipIf(!hasScript || !hasDist())('the built binary on a terminal', () => {
  beforeAll(async () => {
    dir = await tempDir()
    await prepareStore(dir.path)
    await writeSplit(join(dir.path, 'hf'), { split: 'train', shards: 2, rows: 20, first: 0 })
  })
  afterAll(async () => dir?.remove())

  it('draws the heat map and the progress bar with the bundled Ink', () => {
    const matrix = onTerminal(['compare-refs', '--refs', SWEEP.join(','), '--field', 'prediction'], {}, 100, [
      DIST_ENTRY,
    ])
    expect(matrix.code, matrix.output).toBe(0)
    expect(matrix.output).toMatch(BACKGROUND)
    expect(plain(matrix.output)).toMatch(/A lr0\.001 +— /)
    const ingest = onTerminal(
      ['ingest', '--root', 'hf', '--dataset-name', 'tty-dist', '--splits', 'train', '--backend', 'store-tty'],
      {},
      100,
      [DIST_ENTRY],
    )
    expect(ingest.code, ingest.output).toBe(0)
    expect(plain(ingest.output)).toMatch(/40\/40 records .* in \d+:\d\d/)
    expect(plain(ingest.output)).toMatch(/^ingested 40 records .* into 'tty-dist' \(created\)/m)
  })
})
