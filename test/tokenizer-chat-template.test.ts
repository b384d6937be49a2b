/**
 * Prompt formats: MPT-7B-Chat's Jinja chat_template rendered as transformers renders it, the
 * built-in ChatML and instruct formats, and detection from a model folder.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  chatmlFormat,
  detectPromptFormat,
  instructFormat,
  plainFormat,
  renderJinjaChatTemplate,
  resolvePromptFormat,
  MPT_CHAT_DEFAULT_SYSTEM,
} from '../src/runtime/chat-template.js';
import { MptTokenizer } from '../src/runtime/tokenizer.js';
import { loadTokenizer, shippedNeoxTokenizerPath } from '../src/runtime/tokenizer-files.js';
import { fixturePath, REPO_ROOT } from './helpers/goldens.js';
import { makeChatModelFolder } from './helpers/model-folders.js';

const chatConfig = JSON.parse(readFileSync(fixturePath('mpt-configs/mpt-7b-chat.tokenizer_config.json'), 'utf8')) as {
  chat_template: string;
  eos_token: string;
  bos_token: string;
};
const TEMPLATE = chatConfig.chat_template;
const special = { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>' };
const render = (messages: { role: string; content: string }[], addGenerationPrompt: boolean) =>
  renderJinjaChatTemplate(TEMPLATE, messages, { addGenerationPrompt, specialTokens: special });

/*
 * Expected strings, derived by hand from the template's Python/Jinja semantics (transformers
 * renders it with trim_blocks and lstrip_blocks, passing messages, add_generation_prompt and the
 * special-token strings; nothing is stripped afterwards). Reading the template:
 *   - messages[0] is 'system' -> loop_messages = messages[1:], system_message = its content;
 *     else if 'system' is not a substring of messages[0].role -> the default system message;
 *     else (a role merely containing "system") -> system_message = false.
 *   - first loop message: if system_message != false, '<|im_start|>system\n' + system.strip() + '\n'
 *     (note: NO <|im_end|> after the system turn), then '<|im_start|>' + role + '\n' + content +
 *     '<|im_end|>'; later messages: '\n' + the same (turns are joined by "\n", not ended by it).
 *   - INSIDE the loop, after every message: if add_generation_prompt -> '\n<|im_start|>assistant\n';
 *     elif the message is an assistant's -> eos_token. So with add_generation_prompt the
 *     assistant header follows every message, and without it past assistant turns end in EOS.
 */
test('MPT-7B-Chat template: one user turn, default system prompt, generation prompt', () => {
  const expected =
    '<|im_start|>system\n' +
    MPT_CHAT_DEFAULT_SYSTEM +
    '\n' +
    '<|im_start|>user\nHello, how are you?<|im_end|>' +
    '\n<|im_start|>assistant\n';
  assert.equal(render([{ role: 'user', content: 'Hello, how are you?' }], true), expected);
  // The same text is golden-encodings.json's ChatML example (produced independently).
  const golden = JSON.parse(readFileSync(`${REPO_ROOT}assets/gpt-neox-20b/golden-encodings.json`, 'utf8'));
  assert.equal(expected, golden.chatml_example.text);
});

test('MPT-7B-Chat template: system prompt stripped, history, generation prompt after every message', () => {
  const msgs = [
    { role: 'system', content: '  Be brief.\n' },
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello!' },
    { role: 'user', content: 'Bye' },
  ];
  const expected =
    '<|im_start|>system\nBe brief.\n' +
    '<|im_start|>user\nHi<|im_end|>' +
    '\n<|im_start|>assistant\n' +
    '\n<|im_start|>assistant\nHello!<|im_end|>' +
    '\n<|im_start|>assistant\n' +
    '\n<|im_start|>user\nBye<|im_end|>' +
    '\n<|im_start|>assistant\n';
  assert.equal(render(msgs, true), expected);
});

test('MPT-7B-Chat template: without a generation prompt, past assistant turns end with EOS', () => {
  const msgs = [
    { role: 'user', content: 'Hi' },
    { role: 'assistant', content: 'Hello!' },
  ];
  const expected =
    '<|im_start|>system\n' +
    MPT_CHAT_DEFAULT_SYSTEM +
    '\n' +
    '<|im_start|>user\nHi<|im_end|>' +
    '\n<|im_start|>assistant\nHello!<|im_end|><|endoftext|>';
  assert.equal(render(msgs, false), expected);
  // A role that only contains "system" turns the system prompt off and is kept as a turn.
  assert.equal(
    render(
      [
        { role: 'xsystem', content: 'S' },
        { role: 'user', content: 'U' },
      ],
      false,
    ),
    '<|im_start|>xsystem\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>',
  );
});

test('built-in ChatML, instruct and plain formats', () => {
  const msgs = [{ role: 'user', content: 'Hi' }];
  assert.equal(
    chatmlFormat().render(msgs),
    `<|im_start|>system\n${MPT_CHAT_DEFAULT_SYSTEM}<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n`,
  );
  assert.equal(
    chatmlFormat().render([{ role: 'system', content: 'S' }, ...msgs]),
    '<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(
    instructFormat().renderPrompt('What is the capital of France?'),
    'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nWhat is the capital of France?\n\n### Response:\n',
  );
  assert.equal(instructFormat().render(msgs), instructFormat().renderPrompt('Hi'));
  assert.equal(plainFormat().renderPrompt('Once upon a time'), 'Once upon a time');
  assert.equal(
    plainFormat().render([...msgs, { role: 'assistant', content: 'Hello' }, { role: 'user', content: 'Bye' }]),
    'User: Hi\nAssistant: Hello\nUser: Bye\nAssistant:',
  );
  assert.throws(() => chatmlFormat().render([]), /non-empty/);
});

test('detection: chat_template, <|im_start|>, names; --template overrides', () => {
  const { dir, cleanup } = makeChatModelFolder();
  try {
    const chatTok = loadTokenizer(dir, { onNote: () => {} })!;
    const fmt = detectPromptFormat({ tokenizer: chatTok });
    assert.equal(fmt.name, 'jinja');
    assert.equal(fmt.render([{ role: 'user', content: 'x' }]), render([{ role: 'user', content: 'x' }], true));
    assert.deepEqual([...fmt.stopTokens], ['<|im_end|>']);
    assert.equal(resolvePromptFormat('chatml', { tokenizer: chatTok }).name, 'chatml');
    assert.equal(resolvePromptFormat('none', { tokenizer: chatTok }).name, 'none');
    assert.throws(() => resolvePromptFormat('bogus', {}), /unknown template/);
  } finally {
    cleanup();
  }
  const base = new MptTokenizer(JSON.parse(readFileSync(shippedNeoxTokenizerPath(), 'utf8')));
  assert.equal(detectPromptFormat({ tokenizer: base }).name, 'none');
  assert.equal(detectPromptFormat({ tokenizer: base, path: '/models/mpt-7b-instruct' }).name, 'instruct');
  assert.equal(
    detectPromptFormat({ tokenizer: base, configRaw: { tokenizer_name: 'sam-mosaic/gpt-neox-20b-chatml' } }).name,
    'chatml',
  );
  assert.throws(() => resolvePromptFormat('jinja', { tokenizer: base }), /no chat_template/);
});
