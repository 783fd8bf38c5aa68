/** @jsxRuntime automatic */
/** @jsxImportSource react */
/** The Ink view of the agreement matrix: the shared layout, coloured as a heat map. */
import { Box, Text } from 'ink'
import type { HeatLevel, Line, MatrixLayout } from './matrix.js'

/**
 * Five hues that no terminal palette confuses, in the 16 colours every terminal has (hex
 * colours fall back to whatever is nearest, which can merge neighbouring levels): red for
 * disagreement, green for agreement, and between them magenta, yellow and cyan. Two shades
 * of one hue (yellow and yellowBright) looked the same on common palettes. The glyphs
 * (· ░ ▒ ▓ █) carry the level too.
 */
export const HEAT_COLORS: Record<HeatLevel, { bg: string; fg: string }> = {
  0: { bg: 'red', fg: 'whiteBright' },
  1: { bg: 'magenta', fg: 'whiteBright' },
  2: { bg: 'yellow', fg: 'black' },
  3: { bg: 'cyan', fg: 'black' },
  4: { bg: 'green', fg: 'black' },
}

export interface MatrixViewProps {
  layout: MatrixLayout
  /** Colour the heat cells and headers; without it the glyphs carry the heat. */
  color: boolean
}

function LineView({ line, color }: { line: Line; color: boolean }) {
  if (line.length === 0) return <Text> </Text>
  return (
    <Text wrap="truncate-end">
      {line.map((segment, i) => {
        const heat = segment.level === undefined || !color ? undefined : HEAT_COLORS[segment.level]
        return (
          <Text
            // Segments never move within a line, so their position is a stable key.
            key={i}
            bold={color && segment.strong === true}
            dimColor={color && segment.dim === true}
            {...(heat ? { backgroundColor: heat.bg, color: heat.fg } : {})}
          >
            {segment.text}
          </Text>
        )
      })}
    </Text>
  )
}

export function MatrixView({ layout, color }: MatrixViewProps) {
  return (
    <Box flexDirection="column" width={layout.width}>
      {layout.lines.map((line, i) => (
        <LineView key={i} line={line} color={color} />
      ))}
    </Box>
  )
}

/** The view as an element, for the caller that loads this module on demand (see progressElement). */
export function matrixElement(props: MatrixViewProps) {
  return <MatrixView {...props} />
}
