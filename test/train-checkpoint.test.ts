// Checkpoints survive crashes at every instant of a save: a crash (an injected fault after any
// step of saveCheckpoint, twice in a row) always leaves a complete checkpoint that resuming finds;
// the on-disk states older versions and killed runs leave (only checkpoint.old, stale
// checkpoint.tmp-PID folders, a folder missing its state file, a truncated state file) resume from
// the newest complete checkpoint; `mpt train` refuses to start over silently when it finds only an
// incomplete one; exports publish their files so that a crash never leaves a folder that looks
// complete but mixes two models.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  truncateSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from './helpers/goldens.js';
import { runCli } from './helpers/cli.js';
import {
  checkpointToResume,
  loadCheckpoint,
  saveCheckpoint,
  scanCheckpoints,
  type CheckpointData,
} from '../src/train/checkpoint.js';
import { publishFiles } from '../src/train/durable-fs.js';
import { writeSafetensors } from '../src/formats/safetensors.js';
import { FormatError } from '../src/errors.js';

/** A checkpoint whose every number says which save wrote it (so a mix of two saves shows). */
function state(step: number): CheckpointData {
  return {
    meta: { step, history: Array.from({ length: step }, (_, i) => ({ step: i + 1 })) },
    tensors: new Map([
      ['param/w', { shape: [64, 16], data: new Float32Array(64 * 16).fill(step) }],
      ['opt_m/w', { shape: [64, 16], data: new Float32Array(64 * 16).fill(-step) }],
    ]),
  };
}

/** The step of the checkpoint resuming would load, after checking that all of it comes from that one save. */
async function resumableStep(folder: string): Promise<number | null> {
  const dir = (await scanCheckpoints(folder)).latest;
  if (!dir) return null;
  const ck = await loadCheckpoint(dir);
  const step = ck.meta['step'] as number;
  assert.ok(
    ck.tensors.get('param/w')!.data.every((x) => x === step),
    `${dir}: parameters of another save`,
  );
  assert.ok(
    ck.tensors.get('opt_m/w')!.data.every((x) => x === -step),
    `${dir}: moments of another save`,
  );
  assert.equal((ck.meta['history'] as unknown[]).length, step);
  return step;
}

/** A checkpoint as versions before generation folders wrote it (`checkpoint/`, `checkpoint.old/`). */
async function writeLegacy(dir: string, step: number): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const s = state(step);
  await writeSafetensors(
    join(dir, 'state.safetensors'),
    [...s.tensors].map(([name, t]) => ({
      name,
      dtype: 'f32' as const,
      shape: t.shape,
      data: new Uint8Array(t.data.buffer.slice(0)),
    })),
  );
  writeFileSync(join(dir, 'trainer.json'), JSON.stringify(s.meta) + '\n');
}

/** A pid no process has: a child that has already exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', '']);
  return r.pid!;
}

const tmpFolder = (tag: string) => mkdtempSync(join(tmpdir(), `mpt-ckpt-${tag}-`));

test('a crash after any step of a save, then one in the next save, always leaves a complete checkpoint', async () => {
  const root = tmpFolder('faults');
  try {
    const crash = (at: number) => {
      let n = 0;
      const steps: string[] = [];
      const afterStep = (what: string) => {
        steps.push(what);
        if (++n === at) throw new Error(`crash after ${what}`);
      };
      return { steps, afterStep };
    };
    const base = join(root, 'base');
    await saveCheckpoint(base, state(1));
    let firstFaults = 0;
    for (let a = 1; ; a++) {
      // Save #2 dies after its a-th step (or completes once a passes the number of steps).
      const afterA = join(root, `a${a}`);
      cpSync(base, afterA, { recursive: true });
      const ca = crash(a);
      const completedA = await saveCheckpoint(afterA, state(2), ca).then(
        () => true,
        () => false,
      );
      const stepA = await resumableStep(afterA);
      assert.ok(stepA === 1 || stepA === 2, `after a crash following "${ca.steps.at(-1)}": no complete checkpoint`);
      if (completedA) assert.equal(stepA, 2);
      for (let b = 1; ; b++) {
        // Save #3 dies after its b-th step: the bug was that this deleted the only complete copy.
        const afterB = join(root, `a${a}-b${b}`);
        cpSync(afterA, afterB, { recursive: true });
        const cb = crash(b);
        const completedB = await saveCheckpoint(afterB, state(3), cb).then(
          () => true,
          () => false,
        );
        const stepB = await resumableStep(afterB);
        assert.ok(
          stepB !== null && stepB >= stepA!,
          `crash after "${ca.steps.at(-1)}" then "${cb.steps.at(-1)}": lost the checkpoint of step ${stepA}`,
        );
        // A clean save afterwards leaves exactly one checkpoint folder and no temporary one.
        await saveCheckpoint(afterB, state(4));
        assert.equal(await resumableStep(afterB), 4);
        const left = readdirSync(afterB).filter((f) => f.startsWith('checkpoint'));
        assert.equal(left.length, 1, left.join(' '));
        rmSync(afterB, { recursive: true, force: true });
        if (completedB) {
          assert.ok(b >= 5, `only ${b - 1} fault points in a save: ${cb.steps.join(', ')}`);
          break;
        }
      }
      rmSync(afterA, { recursive: true, force: true });
      if (completedA) break;
      firstFaults++;
    }
    assert.ok(firstFaults >= 4, `only ${firstFaults} fault points`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('crash states on disk: resuming takes the newest complete checkpoint, says why it skips others', async () => {
  const root = tmpFolder('states');
  try {
    // The state the old two-rename save left after a crash between its renames: only checkpoint.old.
    const onlyOld = join(root, 'only-old');
    await writeLegacy(join(onlyOld, 'checkpoint.old'), 5);
    assert.equal(await resumableStep(onlyOld), 5);
    // The next save must not remove it before the new one is complete; after it, only the new one is left.
    await saveCheckpoint(onlyOld, state(6));
    assert.equal(await resumableStep(onlyOld), 6);
    assert.ok(!existsSync(join(onlyOld, 'checkpoint.old')));

    // Both legacy folders: checkpoint/ is the newer.
    const both = join(root, 'both');
    await writeLegacy(join(both, 'checkpoint.old'), 5);
    await writeLegacy(join(both, 'checkpoint'), 6);
    assert.equal(await resumableStep(both), 6);

    // A legacy checkpoint/ whose state file was cut short: checkpoint.old is the last good one.
    const truncated = join(root, 'truncated-legacy');
    await writeLegacy(join(truncated, 'checkpoint.old'), 5);
    await writeLegacy(join(truncated, 'checkpoint'), 6);
    truncateSync(join(truncated, 'checkpoint', 'state.safetensors'), 3000);
    assert.equal(await resumableStep(truncated), 5);
    const scan = await scanCheckpoints(truncated);
    assert.equal(scan.incomplete.length, 1);
    assert.match(scan.incomplete[0]!.dir, /checkpoint$/);
    assert.match(scan.incomplete[0]!.reason, /truncated/);

    // Generation folders: the newest is missing its state file, or has a truncated one.
    for (const damage of ['missing', 'truncated'] as const) {
      const f = join(root, `gen-${damage}`);
      await saveCheckpoint(f, state(7));
      const newest = await saveCheckpoint(f, state(8));
      // An older generation left behind (as if the cleanup after the newest save was interrupted).
      cpSync(newest, join(f, 'checkpoint-1'), { recursive: true });
      if (damage === 'missing') rmSync(join(newest, 'state.safetensors'));
      else truncateSync(join(newest, 'state.safetensors'), 100);
      const s = await scanCheckpoints(f);
      assert.equal(s.latest, join(f, 'checkpoint-1'));
      assert.deepEqual(
        s.incomplete.map((x) => x.dir),
        [newest],
      );
      const why = damage === 'missing' ? /state\.safetensors is missing/ : /state\.safetensors is 100 bytes/;
      assert.match(s.incomplete[0]!.reason, why);
      assert.equal(await checkpointToResume(f), join(f, 'checkpoint-1'));
    }

    // Only incomplete checkpoints: resuming refuses instead of starting over, and says what to do.
    const none = join(root, 'none-complete');
    await writeLegacy(join(none, 'checkpoint'), 3);
    rmSync(join(none, 'checkpoint', 'state.safetensors'));
    await assert.rejects(
      checkpointToResume(none),
      (e: Error) =>
        e instanceof FormatError &&
        e.message.includes(join(none, 'checkpoint')) &&
        /--no-resume/.test(e.message) &&
        /state\.safetensors is missing/.test(e.message),
    );
    // An empty or absent folder is a fresh start.
    assert.equal(await checkpointToResume(join(root, 'absent')), null);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('a save removes checkpoint.tmp-PID folders of dead processes and keeps those of live ones', async () => {
  const f = tmpFolder('stale');
  try {
    await saveCheckpoint(f, state(1));
    const dead = join(f, `checkpoint.tmp-${deadPid()}`),
      live = join(f, `checkpoint.tmp-${process.ppid}`);
    for (const d of [dead, live]) {
      mkdirSync(d);
      writeFileSync(join(d, 'state.safetensors'), 'partial');
    }
    assert.equal(await resumableStep(f), 1, 'temporary folders are never resumed from');
    await saveCheckpoint(f, state(2));
    assert.ok(!existsSync(dead), "the dead run's temporary folder is gone");
    assert.ok(existsSync(live), 'a live process may still be writing its temporary folder');
    assert.equal(await resumableStep(f), 2);
  } finally {
    rmSync(f, { recursive: true, force: true });
  }
});

test('publishing an export: after a crash at any step the folder lacks config.json or has the new model', async () => {
  const root = tmpFolder('publish');
  try {
    const files = ['model.safetensors', 'tokenizer.json', 'config.json'];
    for (let k = 1; ; k++) {
      const dest = join(root, `dest${k}`),
        staged = join(root, `dest${k}.tmp-${process.pid}`);
      mkdirSync(dest);
      mkdirSync(staged);
      for (const f of ['model.safetensors', 'config.json']) writeFileSync(join(dest, f), `old ${f}`);
      writeFileSync(join(dest, 'TRAINING.md'), 'notes the export does not own');
      for (const f of files) writeFileSync(join(staged, f), `new ${f}`);
      let n = 0;
      const fault = () => {
        if (++n === k) throw new Error('crash');
      };
      const done = await publishFiles(staged, dest, 'config.json', fault).then(
        () => true,
        () => false,
      );
      assert.equal(readFileSync(join(dest, 'TRAINING.md'), 'utf8'), 'notes the export does not own');
      if (existsSync(join(dest, 'config.json'))) {
        for (const f of files) {
          assert.equal(readFileSync(join(dest, f), 'utf8'), `new ${f}`, `crash ${k}: ${f} beside the new config.json`);
        }
      }
      if (done) {
        assert.ok(existsSync(join(dest, 'config.json')));
        assert.ok(!existsSync(staged));
        assert.ok(k >= 4, `only ${k - 1} fault points`);
        break;
      }
    }
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

// A recipe small enough that a run takes a second or two.
function recipe(dir: string, steps: number): string {
  const text = join(dir, 'text.txt');
  writeFileSync(text, 'Tom had a red ball. He threw it to Sue, and Sue threw it back.\n<|endoftext|>\n'.repeat(40));
  const path = join(dir, 'r.yaml');
  writeFileSync(
    path,
    `seed: 3
max_seq_len: 16
model: {d_model: 16, n_heads: 2, n_layers: 1, expansion_ratio: 2, vocab_size: 50432, no_bias: true,
        attn_config: {alibi: true}}
tokenizer: {name: ${join(REPO_ROOT, 'assets/gpt-neox-20b/tokenizer.json')}}
data: {train: [${text}]}
optimizer: {name: decoupled_lionw, lr: 1.0e-3}
max_duration: ${steps}ba
global_train_batch_size: 2
save_folder: ${join(dir, 'run')}
save_interval: 1ba
threads: 1
`,
  );
  return path;
}

test('mpt train refuses to start over when save_folder has only incomplete checkpoints; --no-resume does', async () => {
  const dir = tmpFolder('cli');
  try {
    const r = recipe(dir, 2);
    const broken = join(dir, 'run', 'checkpoint');
    await writeLegacy(broken, 3);
    rmSync(join(broken, 'state.safetensors'));
    const refused = await runCli(['train', r]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, new RegExp(`${broken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}.*state\\.safetensors`));
    assert.match(refused.stderr, /--no-resume/);
    assert.doesNotMatch(refused.stderr, /step 1\//, 'no training step ran');
    assert.ok(existsSync(join(broken, 'trainer.json')), 'the incomplete checkpoint is left for the user to look at');

    const over = await runCli(['train', r, '--no-resume']);
    assert.equal(over.code, 0, over.stderr);
    assert.equal(JSON.parse(over.stdout).steps, 2);
    assert.ok(!existsSync(broken), 'the deliberate fresh start replaced the incomplete checkpoint');
    const again = await runCli(['train', r, '--duration', '3ba']);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /resumed from .*checkpoint-\d+ at step 2/);
    const log = readFileSync(join(dir, 'run', 'train-log.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.deepEqual(
      log.map((e) => e.step),
      [1, 2, 3],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
