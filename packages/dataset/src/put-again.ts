import { MissingObjectError } from '@dreamdb/manifest'

/**
 * How many times a writer puts its objects again after its commit found one missing. Once
 * answers the window a GC leaves; a second time covers a GC deleting another of the objects
 * in the meantime. An object still missing after that is not a race: the error is the answer.
 */
export const PUTS_AGAIN = 2

/**
 * `commit()`; when the commit is refused because an object is missing that the writer still
 * holds, put it again and commit again (at most PUTS_AGAIN times). The case is design/0008's
 * S3 window: a dedup hit met an old unreferenced object that a GC had judged (HEAD) before
 * the put freshened it, and the GC's delete landed before the commit's check. The refused
 * commit wrote nothing; an object put again is written anew, young, so no GC takes it now.
 *
 * `putAgain(cid)` stores the writer's objects again and says whether `cid` is one of them;
 * `false` (an object the writer named but did not put, such as a codec's spatial index)
 * ends the commit with the error at once.
 */
export async function commitPuttingAgain<T>(
  commit: () => Promise<T>,
  putAgain: (missing: string) => Promise<boolean>,
): Promise<T> {
  for (let tries = 0; ; tries++) {
    try {
      return await commit()
    } catch (error) {
      if (!(error instanceof MissingObjectError) || tries >= PUTS_AGAIN || !(await putAgain(error.cid)))
        throw error
    }
  }
}
