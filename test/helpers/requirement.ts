/**
 * Tests that need something outside Node (Chromium, a WebGPU adapter): skipped with the reason on a
 * developer's machine that lacks it, but never in CI (CI=true), where .ci/run installs both and a
 * missing one must fail the run instead of passing it with tests not run.
 */
export function skipUnlessPresent(missing: string | null): string | false {
  if (missing === null) return false;
  if (process.env['CI'] === 'true')
    throw new Error(`CI=true and ${missing}: these tests must run in CI (.ci/run installs what they need)`);
  console.log(`# skipped: ${missing}`);
  return missing;
}
