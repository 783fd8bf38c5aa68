/**
 * Decoder fuzz at length: the manifest suite's fuzz file (packages/manifest/test/fuzz.test.ts)
 * with more mutants than the suite runs (DREAMDB_FUZZ_MUTANTS), each through the manifest,
 * ref and tree-node decoders: every mutant decodes canonically or fails typed, and walks
 * over trees with a mutated node end. The sequence is fixed (seeded), so a larger count
 * covers the suite's mutants and more.
 */
import { type Result, runVitest, type Target, zero } from '../lib.js'

export interface FuzzOptions {
  /** Mutants, each decoded three times. */
  mutants: number
}

export async function decoderFuzz(target: Target, options: FuzzOptions): Promise<Result> {
  const started = Date.now()
  const counts = zero()
  const { code, output } = await runVitest('manifest', ['test/fuzz.test.ts'], {
    DREAMDB_FUZZ_MUTANTS: String(options.mutants),
  })
  const notes: string[] = []
  const decodes = /\[fuzz\] (\d+) decodes: (\d+) decoded, (\d+) typed errors, (\d+) untyped/.exec(output)
  const walks = /\[fuzz\] (\d+) mutated walks: (\d+) whole, (\d+) typed errors/.exec(output)
  if (decodes) {
    counts.acknowledged += Number(decodes[2])
    counts.typed += Number(decodes[3])
    counts.untyped += Number(decodes[4])
    notes.push(decodes[0].slice('[fuzz] '.length))
  }
  if (walks) {
    counts.acknowledged += Number(walks[2])
    counts.typed += Number(walks[3])
    notes.push(walks[0].slice('[fuzz] '.length))
  }
  if (code !== 0 || !decodes || !walks) {
    // A failed assertion (an untyped error, a walk that did not end) or a run that broke.
    counts.untyped = Math.max(counts.untyped, 1)
    notes.push(`vitest exited ${code}: ${output.slice(-1500)}`)
  }
  return {
    scenario: 'decoder-fuzz',
    backend: target.backend,
    counts,
    seconds: (Date.now() - started) / 1000,
    notes,
  }
}
