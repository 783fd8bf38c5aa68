/** The progress of ingest: figures, plain lines for logs, and the Ink bar (ink-testing-library). */

import { render } from 'ink-testing-library'
import { createElement } from 'react'
import { describe, expect, it } from 'vitest'
import { bar, figures, formatDuration, type ProgressState, progressLine } from '../src/render/progress.js'
import { ProgressView } from '../src/render/progress-view.js'
import { formatCount } from '../src/render/text.js'

const state = (over: Partial<ProgressState> = {}): ProgressState => ({
  title: 'ingest imagenet-100',
  done: 3_000,
  total: 12_000,
  bytes: 330 << 20,
  elapsedMs: 10_000,
  last: 'committed train data/train-00001-of-00017.parquet rows 1024-2048',
  ...over,
})

describe('progress figures', () => {
  it('rate, bytes per second and ETA from what is done so far', () => {
    expect(figures(state())).toEqual({ percent: 25, rate: 300, byteRate: (330 << 20) / 10, etaSeconds: 30 })
    expect(figures(state({ done: 0 }))).toMatchObject({ percent: 0, rate: undefined, etaSeconds: undefined })
    expect(figures(state({ total: 0, done: 0 })).percent).toBe(100)
  })

  it('counts as en-US writes them, without Intl (whose locale data costs every process ~25 ms)', () => {
    for (const n of [0, 7, 999, 1_000, 12_000, 999_999, 1_000_000, 1_234_567_890, -1_234, 2 ** 53 - 1, 0.5]) {
      expect(formatCount(n)).toBe(n.toLocaleString('en-US'))
    }
  })

  it('durations and bars', () => {
    expect(formatDuration(65)).toBe('1:05')
    expect(formatDuration(3723)).toBe('1:02:03')
    expect(formatDuration(undefined)).toBe('?')
    expect(bar(1, 4, 8)).toBe('██░░░░░░')
    expect(bar(0, 0, 4)).toBe('████')
  })

  it('a plain line for logs', () => {
    expect(progressLine(state())).toBe(
      'ingest imagenet-100:  25% 3,000/12,000 records  300 rec/s  33.0 MiB/s  ETA 0:30  (committed train data/train-00001-of-00017.parquet rows 1024-2048)',
    )
    expect(progressLine(state({ done: 12_000 }))).toMatch(/100% 12,000\/12,000 records .* in 0:10 /)
    expect(
      progressLine(state({ phase: 'training and applying dreamdb.ivf-cosine (1 bit) on embedding' })),
    ).toBe('ingest imagenet-100: training and applying dreamdb.ivf-cosine (1 bit) on embedding')
  })
})

describe('the Ink progress bar', () => {
  it('shows the title, the bar, counts, rate, ETA and the last chunk within the width', () => {
    const { lastFrame, rerender, unmount } = render(
      createElement(ProgressView, { state: state(), width: 60, color: false }),
    )
    const lines = lastFrame()!.split('\n')
    expect(lines[0]).toBe('ingest imagenet-100')
    expect(lines[1]).toMatch(/^█{10}░{30} {2}25%$/)
    expect(lines[2]).toBe('3,000/12,000 records  300 rec/s  33.0 MiB/s  ETA 0:30')
    expect(lines[3]).toContain('rows 1024-2048')
    for (const line of lines) expect(line.length).toBeLessThanOrEqual(60)
    rerender(createElement(ProgressView, { state: state({ done: 12_000 }), width: 60, color: false }))
    expect(lastFrame()!.split('\n')[1]).toMatch(/^█{40} 100%$/)
    unmount()
  })
})
