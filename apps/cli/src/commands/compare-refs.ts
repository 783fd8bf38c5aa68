import { agreementMatrix, compareRefs as compare } from '@dreamdb/dataset'
import { type Context, withRepository } from '../context.js'
import { UsageError } from '../errors.js'
import { layoutAgreement, type MatrixInput, plainLines } from '../render/matrix.js'

export interface CompareOptions {
  refs?: string[]
  prefix?: string
  field: string
  width?: number
}

export interface CompareResult extends MatrixInput {
  backend: string
  /** Records that at least one ref has a value for (the rows of the joined table). */
  records: number
}

export async function compareRefs(ctx: Context, options: CompareOptions): Promise<void> {
  if (options.refs !== undefined && options.prefix !== undefined) {
    throw new UsageError(
      '--refs and --prefix contradict each other',
      'give the refs with --refs a,b,c or pick them with --prefix sweep/',
    )
  }
  if (options.refs === undefined && options.prefix === undefined) {
    throw new UsageError(
      'compare-refs needs refs',
      'dreamdb compare-refs --refs a,b,c --field prediction, or --prefix sweep/',
    )
  }
  await withRepository(ctx, async (repo, store) => {
    let refs = options.refs ?? []
    if (options.prefix !== undefined) {
      for await (const ref of repo.listRefs(options.prefix, { signal: ctx.signal })) refs.push(ref.name)
      if (refs.length === 0) {
        throw new UsageError(`no refs start with '${options.prefix}'`, 'dreamdb refs lists them')
      }
    }
    const duplicate = refs.find((r, i) => refs.indexOf(r) !== i)
    if (duplicate !== undefined) throw new UsageError(`--refs names '${duplicate}' twice`)
    if (refs.length < 2) throw new UsageError(`compare-refs needs at least two refs, got ${refs.length}`)
    refs = [...refs]
    const table = await compare({ refs, fields: [options.field], backend: store, signal: ctx.signal })
    const matrix = agreementMatrix(table, options.field, refs)
    const result: CompareResult = { backend: store.url, ...matrix, records: table.numRows }
    if (ctx.json) return await ctx.outJson('compare-refs', result)
    const stdout = ctx.io.stdout
    const width = options.width ?? (stdout.isTTY && stdout.columns ? stdout.columns : 80)
    const layout = layoutAgreement(matrix, { width })
    if (stdout.isTTY) {
      await renderInk(ctx, layout)
    } else {
      for (const line of plainLines(layout)) await ctx.out(line)
    }
  })
}

/** Draw the Ink view on the terminal, once, and leave it there. */
async function renderInk(ctx: Context, layout: ReturnType<typeof layoutAgreement>): Promise<void> {
  // Ink colours through chalk, which reads FORCE_COLOR when first loaded: make our decision
  // (TTY, NO_COLOR, --no-color) the one that counts.
  if (!ctx.color) ctx.io.env.FORCE_COLOR = '0'
  const [{ render }, { matrixElement }] = await Promise.all([
    import('ink'),
    import('../render/matrix-view.js'),
  ])
  const instance = render(matrixElement({ layout, color: ctx.color }), {
    stdout: ctx.io.stdout as unknown as NodeJS.WriteStream,
    patchConsole: false,
    exitOnCtrlC: false,
  })
  instance.unmount()
  await instance.waitUntilExit()
}
