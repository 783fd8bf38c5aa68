/**
 * The project's default backend (issue 14): `dreamdb init` writes `.dreamdb.json`, later verbs
 * run anywhere below it read it, and `--backend` > `DREAMDB_BACKEND` > the file > `./.dreamdb`.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { cli, tempDir } from './helpers.js'

const SCHEMA = JSON.stringify([{ name: 'label', family: 'scalar', kind: 'categorical' }])
let dir: { path: string; remove: () => Promise<void> }
beforeEach(async () => {
  dir = await tempDir()
})
afterEach(async () => dir.remove())

const names = (stdout: string) => (JSON.parse(stdout) as { refs: { name: string }[] }).refs.map((r) => r.name)

describe('.dreamdb.json', () => {
  it('init records the backend; verbs in the project and below use it without --backend', async () => {
    const project = join(dir.path, 'project')
    await mkdir(join(project, 'src', 'deep'), { recursive: true })
    const created = await cli(['init', 'ds', '--schema', SCHEMA, '--backend', './stores/main'], {
      cwd: project,
    })
    expect(created.code, created.stderr).toBe(0)
    expect(created.stdout).toContain('.dreamdb.json')
    expect(JSON.parse(await readFile(join(project, '.dreamdb.json'), 'utf8'))).toEqual({
      backend: './stores/main',
    })
    for (const cwd of [project, join(project, 'src', 'deep')]) {
      const refs = await cli(['refs', '--json'], { cwd })
      expect(refs.code, refs.stderr).toBe(0)
      expect(names(refs.stdout)).toEqual(['ds'])
      expect(JSON.parse(refs.stdout).backend).toBe(`file://${join(project, 'stores', 'main')}`)
    }
  })

  it('flag > environment > file > ./.dreamdb', async () => {
    await cli(['init', 'from-file', '--schema', SCHEMA, '--backend', './a'], { cwd: dir.path })
    await cli(['init', 'from-env', '--schema', SCHEMA, '--backend', './b', '--no-save-config'], {
      cwd: dir.path,
    })
    await cli(['init', 'from-flag', '--schema', SCHEMA, '--backend', './c'], { cwd: dir.path })
    const b = join(dir.path, 'b')
    const at = (args: string[], env: Record<string, string> = {}) =>
      cli([...args, '--json'], { cwd: dir.path, env })
    expect(names((await at(['refs'])).stdout)).toEqual(['from-file'])
    expect(names((await at(['refs'], { DREAMDB_BACKEND: b })).stdout)).toEqual(['from-env'])
    expect(names((await at(['refs', '--backend', './c'], { DREAMDB_BACKEND: b })).stdout)).toEqual([
      'from-flag',
    ])
    // The third init found the file and left it as it was.
    expect(JSON.parse(await readFile(join(dir.path, '.dreamdb.json'), 'utf8'))).toEqual({ backend: './a' })
  })

  it('init --json says which file it wrote (null when one existed), and --no-save-config writes none', async () => {
    const first = await cli(['init', 'one', '--schema', SCHEMA, '--no-save-config', '--json'], {
      cwd: dir.path,
    })
    expect(JSON.parse(first.stdout).config).toBeNull()
    const second = await cli(['init', 'two', '--schema', SCHEMA, '--json'], { cwd: dir.path })
    expect(JSON.parse(second.stdout).config).toBe(join(dir.path, '.dreamdb.json'))
    const third = await cli(['init', 'three', '--schema', SCHEMA, '--json'], { cwd: dir.path })
    expect(JSON.parse(third.stdout).config).toBeNull()
  })

  it('a config that is not what it should be is a user error naming the file', async () => {
    await writeFile(join(dir.path, '.dreamdb.json'), '{"backend": 42}')
    const result = await cli(['refs'], { cwd: dir.path })
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/^dreamdb: ERR_CLI_BAD_CONFIG: .*\.dreamdb\.json "backend" must be/)
    await writeFile(join(dir.path, '.dreamdb.json'), '{not json')
    expect((await cli(['refs'], { cwd: dir.path })).stderr).toMatch(/ERR_CLI_BAD_CONFIG: .*is not valid JSON/)
    // --backend and DREAMDB_BACKEND do not need the file.
    await cli(['init', 'ds', '--schema', SCHEMA, '--backend', './s'], { cwd: dir.path })
    expect((await cli(['refs', '--backend', './s'], { cwd: dir.path })).code).toBe(0)
    expect((await cli(['refs'], { cwd: dir.path, env: { DREAMDB_BACKEND: join(dir.path, 's') } })).code).toBe(
      0,
    )
    // and init leaves the broken file alone for its owner to fix.
    expect(await readFile(join(dir.path, '.dreamdb.json'), 'utf8')).toBe('{not json')
  })
})
