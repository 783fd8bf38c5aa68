/**
 * Regenerates test/fixtures/*.hex from the sample objects. Run it by hand only when the
 * format version changes (a new FORMAT_VERSION gets new fixtures beside the old ones):
 *   npx tsx test/write-fixtures.ts
 */
import { writeFileSync } from 'node:fs'
import { encodeTreeNode } from '../src/codec.js'
import { encodeManifest, encodeRefTarget } from '../src/index.js'
import { SAMPLE_BRANCH, SAMPLE_LEAF, SAMPLE_MANIFEST, SAMPLE_REF } from './helpers/samples.js'

const write = (name: string, bytes: Uint8Array) =>
  writeFileSync(
    new URL(`./fixtures/${name}.v1.hex`, import.meta.url),
    `${Buffer.from(bytes).toString('hex')}\n`,
  )
write('manifest', encodeManifest(SAMPLE_MANIFEST))
write('tree-leaf', encodeTreeNode(SAMPLE_LEAF))
write('tree-branch', encodeTreeNode(SAMPLE_BRANCH))
write('ref', encodeRefTarget(SAMPLE_REF))
