// Runs an async function with some environment variables set, restoring them afterwards (the wasm
// pool reads its MPT_WASM_* switches when it starts: pass-tuning.ts).

export async function withEnv<T>(vars: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.keys(vars).map((k) => [k, process.env[k]] as const);
  Object.assign(process.env, vars);
  try {
    return await fn();
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

/** Passes of any size on every thread of a small pool (pass-tuning.ts lightPassMacs off): for tests of the workers' paths. */
export const SHARED_PASSES = { MPT_WASM_LIGHT_PASS_MACS: '0' } as const;
