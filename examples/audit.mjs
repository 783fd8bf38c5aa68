#!/usr/bin/env node
/**
 * A CI audit with the dreamdb CLI's --json output: every ref whose name starts with a prefix
 * (production tags, by default `prod-`) must read back whole (`inspect --verify`), and, with
 * --against, must hold exactly the data of another ref (`diff --exit-code`). Exits 0 when the
 * audit passes, 1 when it finds a problem (each one printed), 2 when it cannot run.
 *
 *   node examples/audit.mjs --backend http://127.0.0.1:9000/datasets --prefix prod-
 *   node examples/audit.mjs --prefix prod- --against mnist     # tags must equal the dataset
 *
 * It runs `dreamdb` from PATH, or the command in $DREAMDB_CLI (e.g. `node apps/cli/dist/index.js`).
 * Only Node.js is needed: no jq. The same checks in a shell step:
 *
 *   dreamdb inspect --ref-name "$TAG" --verify --json > audit.json || exit 1
 *   dreamdb diff mnist "$TAG" --exit-code --json > diff.json || { jq .records diff.json; exit 1; }
 */
import { spawnSync } from 'node:child_process'
import { parseArgs } from 'node:util'

const { values: options } = parseArgs({
  options: {
    backend: { type: 'string' },
    prefix: { type: 'string', default: 'prod-' },
    against: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  },
})
if (options.help) {
  console.log('usage: node examples/audit.mjs [--backend URL] [--prefix prod-] [--against REF]')
  process.exit(0)
}

const [command, ...commandArgs] = (process.env.DREAMDB_CLI ?? 'dreamdb').split(' ').filter(Boolean)
const problems = []

/**
 * Run one verb with --json. Its stdout is always one JSON document: the verb's answer, or on
 * failure `{"format": "dreamdb.error/1", "error": {"code", "message", "hint", "exitCode"}}`.
 */
function dreamdb(...args) {
  const backend = options.backend ? ['--backend', options.backend] : []
  const result = spawnSync(command, [...commandArgs, ...args, ...backend, '--json'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  if (result.error) {
    console.error(`audit: cannot run ${command}: ${result.error.message} (set DREAMDB_CLI)`)
    process.exit(2)
  }
  let doc
  try {
    doc = JSON.parse(result.stdout)
  } catch {
    console.error(`audit: dreamdb ${args.join(' ')} printed no JSON document (exit ${result.status})`)
    process.exit(2)
  }
  return { status: result.status, doc }
}

const listed = dreamdb('refs', options.prefix)
if (listed.doc.error) {
  console.error(`audit: cannot list refs: ${listed.doc.error.code}: ${listed.doc.error.message}`)
  process.exit(2)
}
const refs = listed.doc.refs
if (refs.length === 0) {
  console.error(`audit: no refs start with '${options.prefix}'`)
  process.exit(2)
}

for (const ref of refs) {
  if (ref.damaged) {
    problems.push(`${ref.name}: unreadable ref (${ref.code}: ${ref.message})`)
    continue
  }
  // Every object the state references, read back and checked against its CID.
  const inspected = dreamdb('inspect', '--ref-name', ref.name, '--verify', '--no-splits')
  if (inspected.doc.error) {
    problems.push(`${ref.name}: ${inspected.doc.error.code}: ${inspected.doc.error.message}`)
    continue
  }
  const { verified, stats, manifest } = inspected.doc
  for (const bad of verified.bad) problems.push(`${ref.name}: ${bad.code} ${bad.cid}`)
  console.log(
    `${ref.name}: ${stats.records} records, ${verified.objects}/${inspected.doc.objects.length} objects verified, manifest ${manifest}`,
  )
  if (options.against !== undefined) {
    // Exit 1 from diff --exit-code means "they differ"; the document says how.
    const diffed = dreamdb('diff', options.against, ref.name, '--exit-code')
    if (diffed.doc.error) problems.push(`${ref.name}: ${diffed.doc.error.code}: ${diffed.doc.error.message}`)
    else if (diffed.status === 1) {
      const { records, fields, layers } = diffed.doc
      problems.push(
        `${ref.name} differs from ${options.against}: records +${records.added} -${records.removed}, fields +${fields.added.length} -${fields.removed.length} ~${fields.changed.length}, layers +${layers.added.length} -${layers.removed.length} ~${layers.changed.length}`,
      )
    }
  }
}

for (const problem of problems) console.error(`audit: FAIL ${problem}`)
console.log(
  `audit: ${refs.length} ref(s), ${problems.length === 0 ? 'all good' : `${problems.length} problem(s)`}`,
)
process.exit(problems.length === 0 ? 0 : 1)
