/**
 * A dependency-free SVG line chart of the loss curve (train loss per step, eval loss points).
 */
export interface CurvePoint {
  step: number;
  value: number;
}

function niceTicks(lo: number, hi: number, n: number): number[] {
  const span = hi - lo || 1;
  const raw = span / n;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Number(v.toPrecision(6)));
  return out;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** Renders train (line, lightly smoothed) and eval (dots + line) losses against optimizer steps. */
export function lossCurveSvg(train: CurvePoint[], evals: CurvePoint[], title: string): string {
  const W = 720,
    H = 420,
    L = 60,
    R = 20,
    T = 40,
    B = 50;
  const all = [...train, ...evals];
  const maxStep = Math.max(1, ...all.map((p) => p.step));
  const vals = all.map((p) => p.value).filter(Number.isFinite);
  let lo = vals.length ? Math.min(...vals) : 0,
    hi = vals.length ? Math.max(...vals) : 1;
  if (hi - lo < 1e-6) {
    hi += 0.5;
    lo -= 0.5;
  }
  lo = Math.max(0, lo - 0.05 * (hi - lo));
  const x = (s: number) => L + (s / maxStep) * (W - L - R);
  const y = (v: number) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  // Exponential moving average for readability (the raw points are in the JSONL log).
  let ema = NaN;
  const smooth = train.map((p) => {
    ema = Number.isNaN(ema) ? p.value : 0.9 * ema + 0.1 * p.value;
    return { step: p.step, value: ema };
  });
  const path = (pts: CurvePoint[]) =>
    pts.map((p, i) => `${i ? 'L' : 'M'}${x(p.step).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ');
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
  );
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="14">${esc(title)}</text>`);
  for (const v of niceTicks(lo, hi, 6)) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#eee"/>`);
    parts.push(`<text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v}</text>`);
  }
  for (const s of niceTicks(0, maxStep, 8)) {
    parts.push(`<line x1="${x(s).toFixed(1)}" x2="${x(s).toFixed(1)}" y1="${T}" y2="${H - B}" stroke="#eee"/>`);
    parts.push(`<text x="${x(s).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${s}</text>`);
  }
  parts.push(`<rect x="${L}" y="${T}" width="${W - L - R}" height="${H - T - B}" fill="none" stroke="#888"/>`);
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 12}" text-anchor="middle">optimizer step</text>`);
  parts.push(
    `<text x="16" y="${(T + H - B) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(T + H - B) / 2})">cross-entropy (nats/token)</text>`,
  );
  if (train.length) {
    parts.push(`<path d="${path(train)}" fill="none" stroke="#9ecae1" stroke-width="1"/>`);
    parts.push(`<path d="${path(smooth)}" fill="none" stroke="#1f77b4" stroke-width="2"/>`);
  }
  if (evals.length) {
    parts.push(`<path d="${path(evals)}" fill="none" stroke="#d62728" stroke-width="1.5"/>`);
    for (const p of evals)
      parts.push(`<circle cx="${x(p.step).toFixed(1)}" cy="${y(p.value).toFixed(1)}" r="3" fill="#d62728"/>`);
  }
  parts.push(
    `<g transform="translate(${W - R - 170},${T + 10})"><rect width="160" height="44" fill="white" stroke="#ccc"/>`,
  );
  parts.push(
    `<line x1="8" x2="28" y1="14" y2="14" stroke="#1f77b4" stroke-width="2"/><text x="34" y="18">train loss (EMA 0.9)</text>`,
  );
  parts.push(
    `<line x1="8" x2="28" y1="32" y2="32" stroke="#d62728" stroke-width="1.5"/><text x="34" y="36">eval loss</text></g>`,
  );
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
