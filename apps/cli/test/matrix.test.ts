/** The agreement matrix layout (pure) at 80 columns for 3, 12 and 20 refs, and its Ink view. */
import { render } from 'ink-testing-library'
import { createElement } from 'react'
import { describe, expect, it } from 'vitest'
import {
  distinctiveNames,
  HEAT_GLYPHS,
  heatLevel,
  keyOf,
  layoutAgreement,
  type MatrixInput,
  percent,
  plainLines,
} from '../src/render/matrix.js'
import { HEAT_COLORS, MatrixView } from '../src/render/matrix-view.js'

const LRS = ['0.001', '0.003', '0.01', '0.03', '0.1', '0.3', '1']
const BATCHES = ['128', '512', '2048']

/** n sweep refs with a deterministic symmetric agreement in [0.3, 1). */
function sweep(n: number, overlap = 1000): MatrixInput {
  const refs = Array.from(
    { length: n },
    (_, i) =>
      `sweep/lp-lr${LRS[i % LRS.length]}-bs${BATCHES[Math.floor(i / LRS.length) % 3]}-r${Math.floor(i / 21)}`,
  )
  const agreement = refs.map((_, i) =>
    refs.map((_, j) => (i === j ? 1 : 0.3 + (((i + 1) * (j + 1) * 37) % 69) / 100)),
  )
  return {
    field: 'prediction',
    refs,
    agreement,
    overlap: refs.map(() => refs.map(() => overlap)),
    counts: refs.map((_, i) => overlap - i),
  }
}

const widest = (lines: string[]) => Math.max(...lines.map((l) => l.length))

describe('layoutAgreement at 80 columns', () => {
  it('3 refs: a matrix with heat glyphs, rows named by what differs, a legend of full names', () => {
    const input = sweep(3)
    const layout = layoutAgreement(input, { width: 80 })
    const lines = plainLines(layout)
    expect(layout.mode).toBe('matrix')
    expect(widest(lines)).toBeLessThanOrEqual(80)
    expect(lines[0]).toBe("'prediction' agreement across 3 refs")
    expect(lines[2]).toMatch(/^\s+A {4}B {4}C$/)
    expect(lines[3]).toMatch(/^A lr0\.001 +— +\d+[·░▒▓█] +\d+[·░▒▓█]$/)
    const cell = `${percent(input.agreement[0]![1]!).padStart(3)}${HEAT_GLYPHS[heatLevel(input.agreement[0]![1]!)]}`
    expect(lines[3]).toContain(cell)
    for (const [i, ref] of input.refs.entries()) {
      expect(lines).toContain(`${keyOf(i)}  ${String(input.counts[i]).padStart(4)} values  ${ref}`)
    }
  })

  it('12 refs: still a matrix with glyphs, every row and legend entry present', () => {
    const input = sweep(12)
    const layout = layoutAgreement(input, { width: 80 })
    const lines = plainLines(layout)
    expect(layout.mode).toBe('matrix')
    expect(widest(lines)).toBeLessThanOrEqual(80)
    const rows = lines.filter((l) => /^[A-L] \S/.test(l) && !l.includes('values'))
    expect(rows).toHaveLength(12)
    for (const row of rows) expect(row).toMatch(/[·░▒▓█]/)
    // Row labels keep the distinctive part (learning rate, batch size) of each ref.
    expect(rows[7]).toMatch(/^H lr0\.001-bs512/)
    for (const ref of input.refs) expect(lines.some((l) => l.endsWith(ref))).toBe(true)
  })

  it('20 refs: degrades to the most and least agreeing pairs', () => {
    const input = sweep(20)
    const layout = layoutAgreement(input, { width: 80, pairs: 5 })
    const lines = plainLines(layout)
    expect(layout.mode).toBe('pairs')
    expect(widest(lines)).toBeLessThanOrEqual(80)
    expect(lines).toContain('most agreeing pairs')
    expect(lines).toContain('least agreeing pairs')
    const pairLines = lines.filter((l) => /^ +\d+% /.test(l))
    expect(pairLines).toHaveLength(10)
    // The first pair listed is the maximum off the diagonal; the last of the second list the minimum.
    const off = input.agreement.flatMap((row, i) => row.filter((_, j) => j !== i))
    expect(pairLines[0]).toMatch(new RegExp(`^ +${percent(Math.max(...off))}% `))
    expect(pairLines[5]).toMatch(new RegExp(`^ +${percent(Math.min(...off))}% `))
    expect(pairLines[0]).toMatch(/sweep\/\S+ ~ sweep\/\S+ +\(1000 shared\)$/)
    expect(lines.join('\n')).toContain('--json has every pair')
  })

  it.each([80, 60, 45])('the fallback explanation wraps at words, none cut, at %i columns', (width) => {
    const lines = plainLines(layoutAgreement(sweep(30), { width }))
    expect(widest(lines)).toBeLessThanOrEqual(width)
    const start = lines.findIndex((l) => l.startsWith('too many refs'))
    const end = lines.findIndex((l, i) => i >= start && l.endsWith('pair)'))
    expect(start).toBeGreaterThan(0)
    expect(end).toBeGreaterThanOrEqual(start)
    const sentence = lines.slice(start, end + 1)
    for (const line of sentence) expect(line).not.toContain('…')
    expect(sentence.join(' ')).toBe(
      `too many refs for a ${width}-column matrix; extremes follow (--json has every pair)`,
    )
  })

  it('uses the room it has: 16 refs drop the glyphs, 20 refs fit 120 columns', () => {
    const sixteen = layoutAgreement(sweep(16), { width: 80 })
    expect(sixteen.mode).toBe('matrix')
    expect(widest(plainLines(sixteen))).toBeLessThanOrEqual(80)
    expect(plainLines(sixteen)[3]).not.toMatch(/[░▒▓█]/)
    const wide = layoutAgreement(sweep(20), { width: 120 })
    expect(wide.mode).toBe('matrix')
    expect(widest(plainLines(wide))).toBeLessThanOrEqual(120)
  })

  it('shows pairs with nothing shared, and fits very long ref names', () => {
    const input = sweep(3)
    input.refs = input.refs.map((r, i) => `${'very-long-experiment-name/'.repeat(6)}${r}-${i}`)
    input.overlap[0]![2] = input.overlap[2]![0] = 0
    const lines = plainLines(layoutAgreement(input, { width: 80 }))
    expect(widest(lines)).toBeLessThanOrEqual(80)
    expect(lines[3]).toMatch(/ +-$/)
    expect(lines.some((l) => l.includes('…'))).toBe(true)
    const pairs = plainLines(
      layoutAgreement({ ...sweep(25), overlap: sweep(25).overlap.map((r) => r.map(() => 0)) }, { width: 80 }),
    )
    expect(pairs).toContain('300 pairs share no records')
  })
})

describe('helpers', () => {
  it('keys, percent, heat levels', () => {
    expect([0, 1, 25, 26, 27, 701, 702].map(keyOf)).toEqual(['A', 'B', 'Z', 'AA', 'AB', 'ZZ', 'AAA'])
    expect([0, 0.499, 0.999, 1].map(percent)).toEqual(['0', '49', '99', '100'])
    expect([0.49, 0.5, 0.75, 0.9, 0.97, 1].map(heatLevel)).toEqual([0, 1, 2, 3, 4, 4])
  })

  it('distinctive names drop the shared prefix and suffix at separators', () => {
    expect(
      distinctiveNames(['sweep/lp-lr0.001-bs128', 'sweep/lp-lr0.01-bs128', 'sweep/lp-lr0.1-bs128']),
    ).toEqual(['lr0.001', 'lr0.01', 'lr0.1'])
    expect(distinctiveNames(['corpus', 'corpus-v2'])).toEqual(['corpus', 'corpus-v2'])
    expect(distinctiveNames(['a/x-1', 'b/x-1'])).toEqual(['a', 'b'])
    expect(distinctiveNames(['run-1', 'run-2'])).toEqual(['1', '2'])
  })
})

describe('the Ink view', () => {
  it('colours the five heat levels with five different hues (not two shades of one)', () => {
    const hue = (name: string) => name.replace(/Bright$/, '')
    const hues = Object.values(HEAT_COLORS).map((c) => hue(c.bg))
    expect(new Set(hues).size).toBe(5)
    expect(hue(HEAT_COLORS[1].bg)).not.toBe(hue(HEAT_COLORS[2].bg))
  })

  it('renders the same lines as the plain output', () => {
    const layout = layoutAgreement(sweep(12), { width: 80 })
    const { lastFrame, unmount } = render(createElement(MatrixView, { layout, color: false }))
    const frame = lastFrame()!
    expect(frame.split('\n').map((l) => l.trimEnd())).toEqual(plainLines(layout))
    unmount()
  })

  it('renders the pairs view', () => {
    const layout = layoutAgreement(sweep(20), { width: 80 })
    const { lastFrame, unmount } = render(createElement(MatrixView, { layout, color: true }))
    const frame = lastFrame()!.replace(new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g'), '')
    expect(frame).toContain('most agreeing pairs')
    expect(frame.split('\n').every((l) => l.length <= 80)).toBe(true)
    unmount()
  })
})
