/** @jsxRuntime automatic */
/** @jsxImportSource react */
/** The Ink progress bar of `ingest`: a bar, the percentage, counts, rate and ETA, the last chunk. */
import { Box, Text } from 'ink'
import { bar, figures, type ProgressState, progressText } from './progress.js'
import { truncateMiddle } from './text.js'

export interface ProgressViewProps {
  state: ProgressState
  /** Columns to fit. */
  width: number
  color: boolean
}

export function ProgressView({ state, width, color }: ProgressViewProps) {
  const f = figures(state)
  const percent = `${String(f.percent).padStart(3)}%`
  const barWidth = Math.max(10, Math.min(40, width - percent.length - 2))
  const filled = bar(state.done, state.total, barWidth)
  const done = filled.replace(/░+$/, '')
  return (
    <Box flexDirection="column" width={width}>
      <Text bold={color} wrap="truncate-end">
        {state.title}
      </Text>
      <Text wrap="truncate-end">
        <Text {...(color ? { color: 'green' } : {})}>{done}</Text>
        <Text dimColor={color}>{filled.slice(done.length)}</Text> {percent}
      </Text>
      <Text wrap="truncate-end">{progressText(state)}</Text>
      <Text dimColor={color} wrap="truncate-end">
        {state.phase ?? (state.last ? truncateMiddle(state.last, width) : ' ')}
      </Text>
    </Box>
  )
}

/**
 * The view as an element, for the caller that loads this module on demand (ingest on a
 * terminal): built here, where React is imported statically, because a dynamic
 * `import('react')` from the CLI's bundle gives only React's CommonJS `default`.
 */
export function progressElement(props: ProgressViewProps) {
  return <ProgressView {...props} />
}
