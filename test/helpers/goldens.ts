/**
 * Reads the golden fixtures (goldens.json + goldens.bin, raw little-endian float32 tensors) that
 * MosaicML's and HF's MPT code produced; see test/fixtures/README.md.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
export const FIXTURES = fileURLToPath(new URL('../../../test/fixtures/', import.meta.url));

export function fixturePath(name: string): string {
  return FIXTURES + name;
}

export interface GoldenTensor {
  dtype: string;
  shape: number[];
  offset: number;
  nbytes: number;
}

export class Goldens {
  // Each producer script writes its own JSON shape and ~25 test files (server-*, web-*, webgpu-* among them) read
  // fields by name; typing it needs a schema for test/fixtures and a change across all of them.
  // biome-ignore lint/suspicious/noExplicitAny: fixture JSON whose shape varies per producer (see above)
  readonly json: Record<string, any>;
  private bin: Buffer | undefined;

  constructor(
    readonly dir: string,
    jsonName = 'goldens.json',
    binName = 'goldens.bin',
  ) {
    this.json = JSON.parse(readFileSync(`${dir}/${jsonName}`, 'utf8'));
    try {
      this.bin = readFileSync(`${dir}/${binName}`);
    } catch {
      this.bin = undefined;
    }
  }

  has(name: string): boolean {
    return this.json.tensors?.[name] !== undefined;
  }

  tensor(name: string): { data: Float32Array; shape: number[] } {
    const t = this.json.tensors?.[name] as GoldenTensor | undefined;
    if (!t || !this.bin) throw new Error(`golden tensor ${name} not found in ${this.dir}`);
    const copy = new Uint8Array(t.nbytes);
    copy.set(this.bin.subarray(t.offset, t.offset + t.nbytes));
    return { data: new Float32Array(copy.buffer), shape: t.shape };
  }

  tensorNames(): string[] {
    return Object.keys(this.json.tensors ?? {});
  }
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

export function argmaxRows(x: Float32Array, rows: number, cols: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < rows; r++) {
    let best = 0;
    for (let c = 1; c < cols; c++) if (x[r * cols + c]! > x[r * cols + best]!) best = c;
    out.push(best);
  }
  return out;
}
