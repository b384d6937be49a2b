/** KL divergence between the next-token distributions of two sets of logits. */

/** Per-row KL(p || q) of softmax(a) and softmax(b), [rows, V] each, in float64. */
export function klRows(a: Float32Array, b: Float32Array, rows: number, V: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    const lp = (x: Float32Array) => {
      let m = -Infinity;
      for (let i = 0; i < V; i++) m = Math.max(m, x[r * V + i]!);
      let s = 0;
      for (let i = 0; i < V; i++) s += Math.exp(x[r * V + i]! - m);
      const ls = Math.log(s);
      return (i: number) => x[r * V + i]! - m - ls;
    };
    const la = lp(a),
      lb = lp(b);
    let kl = 0;
    for (let i = 0; i < V; i++) {
      const p = Math.exp(la(i));
      kl += p * (la(i) - lb(i));
    }
    out.push(Math.max(0, kl));
  }
  return out;
}
