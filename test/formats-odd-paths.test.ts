// Odd things given as a model path: a character device, a FIFO (which would be read forever), a
// symbolic-link loop. Each is refused at once with an InputError naming the path and the problem.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { InputError } from '../src/errors.js';
import { openPathCheckpoint } from '../src/model/open-path.js';

test('a device, a FIFO and a symbolic-link loop as a model path are refused, each by name', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-odd-paths-'));
  try {
    const fifo = join(dir, 'model.gguf');
    execFileSync('mkfifo', [fifo]);
    const a = join(dir, 'a');
    symlinkSync(join(dir, 'b'), a);
    symlinkSync(a, join(dir, 'b'));
    const refused = (path: string, why: RegExp) =>
      assert.rejects(openPathCheckpoint(path), (e: unknown) => {
        assert.ok(e instanceof InputError, String(e));
        assert.ok(e.message.startsWith(path), e.message);
        assert.match(e.message, why);
        return true;
      });
    await refused('/dev/zero', /not a regular file or a folder \(a device, FIFO or socket\)/);
    await refused(fifo, /not a regular file or a folder/);
    await refused(a, /too many symbolic links/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
