/**
 * Model folders assembled for tests: the tiny-neox-vocab weights (real GPT-NeoX vocabulary size)
 * with MPT-7B-Chat's tokenizer side files, so that a "chat model" exists without any download.
 */
import { copyFileSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixturePath } from './goldens.js';

/** A temp folder: tiny-neox-vocab + mpt-7b-chat tokenizer_config / special_tokens_map / generation_config. */
export function makeChatModelFolder(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-chat-'));
  const src = fixturePath('tiny-neox-vocab');
  copyFileSync(join(src, 'config.json'), join(dir, 'config.json'));
  symlinkSync(join(src, 'model.safetensors'), join(dir, 'model.safetensors'));
  const cfg = fixturePath('mpt-configs');
  for (const f of ['tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json']) {
    copyFileSync(join(cfg, `mpt-7b-chat.${f}`), join(dir, f));
  }
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
