/** `mpt info` and `mpt logits` on every fixture folder, driven as a user would: a subprocess. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { FIXTURES, Goldens, REPO_ROOT, maxAbsDiff } from './helpers/goldens.js';

const exec = promisify(execFile);
const MPT = `${REPO_ROOT}bin/mpt.js`;

async function mpt(args: string[]): Promise<{ stdout: string; stderr: string; code: number }> {
  try {
    const r = await exec(process.execPath, [MPT, ...args], { maxBuffer: 256 * 2 ** 20 });
    return { ...r, code: 0 };
  } catch (e) {
    const err = e as { stdout: string; stderr: string; code: number };
    return { stdout: err.stdout, stderr: err.stderr, code: err.code };
  }
}

const folders = readdirSync(FIXTURES).filter((f) => existsSync(`${FIXTURES}${f}/config.json`));

describe('mpt info', () => {
  for (const f of folders) {
    it(`describes ${f}`, async () => {
      const r = await mpt(['info', `${FIXTURES}${f}`, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const info = JSON.parse(r.stdout);
      const config = JSON.parse(readFileSync(`${FIXTURES}${f}/config.json`, 'utf8'));
      assert.equal(info.d_model, config.d_model);
      assert.equal(info.n_layers, config.n_layers);
      assert.equal(info.vocab_size, config.vocab_size);
      // Parameter count from the shapes: vocab*d + per layer (qkv + out + 2*mlp) + norms.
      assert.ok(info.parameters > config.vocab_size * config.d_model);
      assert.ok(info.plan.fits);
    });
  }
  it('prints a human summary and a memory plan for a longer context', async () => {
    const r = await mpt(['info', `${FIXTURES}tiny-storywriter`, '--ctx', '100000', '--kv-type', 'q8_0']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /ALiBi \(bias max 16\)/);
    assert.match(r.stdout, /clip_qkv 6/);
    assert.match(r.stdout, /ALiBi extrapolation/);
  });
  it('--type plans the bytes `mpt convert --type` writes, presets included', async () => {
    const tmp = mkdtempSync(join(tmpdir(), 'mpt-info-type-'));
    try {
      // tiny-alibi's rows of 64 values are no whole k-quant block: the k types fall back there.
      for (const type of ['q4_k_m', 'q5_k_m', 'q4_0', 'q6_k', 'f16']) {
        const out = join(tmp, `${type}.gguf`);
        const c = await mpt(['convert', `${FIXTURES}tiny-alibi`, out, '--type', type, '--tokenizer', 'bytes']);
        assert.equal(c.code, 0, c.stderr);
        const written = JSON.parse((await mpt(['info', out, '--json'])).stdout).weight_bytes;
        const r = await mpt(['info', `${FIXTURES}tiny-alibi`, '--json', '--type', type]);
        assert.equal(r.code, 0, r.stderr);
        const info = JSON.parse(r.stdout);
        assert.equal(info.plan.weightType, type);
        assert.equal(info.plan.weightBytes, written, type);
      }
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
    const bad = await mpt(['info', `${FIXTURES}tiny-alibi`, '--type', 'q2_k']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--type must be one of .*q4_k_m, q5_k_m, got "q2_k"/);
  });
  it('a missing model is a one-line error', async () => {
    const r = await mpt(['info', `${FIXTURES}does-not-exist`]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /model not found/);
  });
});

describe('mpt logits', () => {
  for (const f of folders) {
    it(`matches the goldens on ${f}`, async () => {
      const g = new Goldens(`${FIXTURES}${f}`);
      const ids: number[] = g.json.inputs.seq7 ?? g.json.inputs.seq32;
      const key = g.json.inputs.seq7 ? 'logits/seq7' : 'logits/seq32';
      const r = await mpt(['logits', `${FIXTURES}${f}`, '--tokens', ids.join(',')]);
      assert.equal(r.code, 0, r.stderr);
      const rows: number[][] = JSON.parse(r.stdout).logits;
      assert.equal(rows.length, ids.length);
      assert.ok(maxAbsDiff(rows.flat(), g.tensor(key).data) <= 5e-4);
      const last = await mpt(['logits', `${FIXTURES}${f}`, '--tokens', ids.join(','), '--last']);
      assert.equal(JSON.parse(last.stdout).logits.length, 1);
    });
  }
  it('refuses bad token lists with a one-line error', async () => {
    const r = await mpt(['logits', `${FIXTURES}tiny-alibi`, '--tokens', '1,x']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^mpt logits: --tokens: "x" is not a token id\n$/);
    const r2 = await mpt(['logits', `${FIXTURES}tiny-alibi`, '--tokens', '99999']);
    assert.equal(r2.code, 1);
    assert.match(r2.stderr, /outside the vocabulary/);
  });
});
