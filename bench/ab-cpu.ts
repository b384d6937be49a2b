/**
 * The alternation and CPU-time statistics the kernel A/B programs share (decode-ab, kprompt-ab):
 * two variants called alternately (A B B A …) so that a shared host's drifts fall on both alike,
 * each call timed in CPU time of the process (`process.cpuUsage`, which leaves out the time it
 * waits for a core) as well as wall time.
 */

/** CPU time (user + system) of this process so far, ms. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** reps calls of run(0) and of run(1), alternated; per variant its CPU and wall times per call, ms. */
export function alternate(reps: number, run: (i: number) => void): { cpu: number[][]; wall: number[][] } {
  const cpu: number[][] = [[], []],
    wall: number[][] = [[], []];
  for (let r = 0; r < reps; r++) {
    for (const i of r & 1 ? [0, 1] : [1, 0]) {
      const w0 = performance.now(),
        c0 = cpuMs();
      run(i);
      cpu[i]!.push(cpuMs() - c0);
      wall[i]!.push(performance.now() - w0);
    }
  }
  return { cpu, wall };
}

/** Minimum, first quartile and median of the CPU times, minimum of the wall times (ms, 3 decimals). */
export function cpuStats(cpu: number[], wall: number[]) {
  const s = [...cpu].sort((a, b) => a - b);
  return {
    cpu_min_ms: +s[0]!.toFixed(3),
    cpu_p25_ms: +s[Math.floor(s.length / 4)]!.toFixed(3),
    cpu_median_ms: +s[Math.floor(s.length / 2)]!.toFixed(3),
    wall_min_ms: +Math.min(...wall).toFixed(3),
  };
}
