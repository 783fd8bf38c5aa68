/**
 * `node --import ./out/trace-sdk.js`: appends the URL of every module resolved under
 * `@aws-sdk/` or `@smithy/` to the file named by DREAMDB_TRACE_SDK, so that cas-only.ts can
 * tell whether the AWS SDK was loaded (hooks run on their own thread; the write is done
 * before the import it traces returns).
 */
import { register } from 'node:module'

register('./trace-sdk-hooks.js', import.meta.url)
