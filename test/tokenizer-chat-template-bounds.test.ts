/**
 * Chat templates are hostile input: rendering is bounded in work, memory and recursion, refusals
 * are InputErrors, and real templates render byte-for-byte as @huggingface/jinja's own
 * `Template.render` renders them.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { Template } from '@huggingface/jinja';
import { InputError } from '../src/errors.js';
import { jinjaFormat, renderJinjaChatTemplate, type ChatMessage } from '../src/runtime/chat-template.js';
import { MptServer } from '../src/server/http-server.js';
import { loadServedModel } from '../src/server/model-host.js';
import { fixturePath } from './helpers/goldens.js';

const mptChatConfig = JSON.parse(
  readFileSync(fixturePath('mpt-configs/mpt-7b-chat.tokenizer_config.json'), 'utf8'),
) as Record<string, unknown> & { chat_template: string };

/** Real templates: MPT-7B-Chat's, and ChatML, Llama-2, Mistral and tool-listing styles written out here. */
const TEMPLATES: Record<string, string> = {
  'mpt-7b-chat': mptChatConfig.chat_template,
  chatml:
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
  llama2:
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
  mistral:
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] | trim + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% else %}{{ message['content'] | upper }}\n{% endif %}{% endfor %}",
  'tools-and-indent': `{%- set ns = namespace(n=0) -%}
{%- for m in messages -%}
{%- set ns.n = ns.n + 1 -%}
{{ loop.index }}/{{ messages | length }} {{ m.role | title }}: {{ m.content | indent(2) }}
{%- if m.role == 'assistant' %} {{ {'role': m.role, 'len': m.content | length} | tojson(indent=2) }}{% endif %}
{% endfor -%}
{%- for i in range(ns.n) if i % 3 == 0 %}{{ i }},{% endfor %}{{ messages | map(attribute='role') | join('|') }}`,
};
const special = { bos_token: '<|endoftext|>', eos_token: '<|endoftext|>', unk_token: '<|endoftext|>' };

/** A deterministic pseudo-random conversation of `n` messages. */
function conversation(seed: number, n: number): ChatMessage[] {
  let s = seed;
  const next = () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s;
  };
  const words = ['hello', 'the', ' spaced ', 'line\nbreak', 'ünïcode', '{{ not code }}', '<|im_end|>', '  '];
  const out: ChatMessage[] = [];
  if (next() % 2 === 0) out.push({ role: 'system', content: 'You are terse.\n' });
  for (let i = 0; i < n; i++) {
    let content = '';
    for (let w = next() % 6; w > 0; w--) content += words[next() % words.length];
    out.push({ role: i % 2 === 0 ? 'user' : 'assistant', content });
  }
  return out;
}

test('real templates render as Template.render renders them, for many conversations', () => {
  for (const [name, src] of Object.entries(TEMPLATES)) {
    const reference = new Template(src);
    for (let seed = 1; seed <= 40; seed++) {
      const messages = conversation(seed, 1 + (seed % 9));
      for (const addGenerationPrompt of [true, false]) {
        const expected = reference.render({
          ...special,
          messages: messages.map((m) => ({ ...m })),
          add_generation_prompt: addGenerationPrompt,
        });
        const got = renderJinjaChatTemplate(src, messages, { addGenerationPrompt, specialTokens: special });
        assert.equal(got, expected, `${name}, seed ${seed}, add_generation_prompt ${addGenerationPrompt}`);
      }
    }
  }
});

test('real templates stay within bounds for 100 messages and a 1 MB document', () => {
  const messages = conversation(7, 100);
  messages.push({ role: 'user', content: 'document: '.repeat(104858) });
  for (const [name, src] of Object.entries(TEMPLATES)) {
    const expected = new Template(src).render({ ...special, messages, add_generation_prompt: true });
    const got = renderJinjaChatTemplate(src, messages, { addGenerationPrompt: true, specialTokens: special });
    assert.equal(got, expected, name);
  }
});

const one: ChatMessage[] = [{ role: 'user', content: 'hi' }];
const refused = (src: string, pattern: RegExp) =>
  assert.throws(
    () => renderJinjaChatTemplate(src, one),
    (e: unknown) => e instanceof InputError && pattern.test(e.message),
  );

// Each of these kills, hangs or runs for minutes under Template.render; the test timeout catches a hang.
test('range() refuses long results before building them', { timeout: 5000 }, () => {
  refused('{{ range(1000000000) | length }}', /range\(\) for 1000000000 numbers/);
  refused('{{ range(3000000) | length }}', /range\(\) for 3000000 numbers/);
  refused('{{ range(0, 2000000000, 2) | length }}', /range\(\) for 1000000000 numbers/);
  assert.equal(renderJinjaChatTemplate('{{ range(10, 0, -3) | join(",") }}', one), '10,7,4,1');
});

test('nested loops, string doubling and list doubling run out of budget', { timeout: 5000 }, () => {
  refused(
    '{% for i in range(1000) %}{% for j in range(1000) %}{% for k in range(1000) %}{{ k }}{% endfor %}{% endfor %}{% endfor %}',
    /does too much work/,
  );
  refused(
    "{% set ns = namespace(x='ab') %}{% for i in range(100) %}{% set ns.x = ns.x + ns.x %}{% endfor %}{{ ns.x | length }}",
    /does too much work|builds a string/,
  );
  refused(
    '{% set ns = namespace(x=[1, 2]) %}{% for i in range(100) %}{% set ns.x = ns.x + ns.x %}{% endfor %}{{ ns.x | length }}',
    /does too much work/,
  );
});

test('indent and tojson widths must be small integer literals', () => {
  for (const src of [
    '{{ messages[0].content | indent(1000000000) }}',
    '{{ messages[0].content | indent(width=65) }}',
    '{% set w = 4 %}{{ messages[0].content | indent(w) }}',
    '{{ messages | tojson(indent=1000000000) }}',
    '{% filter indent(1000000000) %}x{% endfilter %}',
  ]) {
    assert.throws(() => renderJinjaChatTemplate(src, one), InputError, src);
    assert.throws(() => jinjaFormat(src), InputError, `${src} at load`);
  }
  assert.equal(renderJinjaChatTemplate("{{ 'a\\nb' | indent(3) }}", one), 'a\n   b');
});

test('deep recursion and deep nesting are InputErrors', { timeout: 5000 }, () => {
  // A macro cannot see itself in this Jinja, but it can be handed itself.
  refused('{% macro f(g) %}{{ g(g) }}{% endmacro %}{{ f(f) }}', /recurses too deeply/);
  assert.throws(() => renderJinjaChatTemplate(`{{ ${'('.repeat(20000)}1${')'.repeat(20000)} }}`, one), InputError);
  assert.throws(
    () => renderJinjaChatTemplate(`${'{% if true %}'.repeat(20000)}x${'{% endif %}'.repeat(20000)}`, one),
    InputError,
  );
});

test('the server answers a hostile template with a JSON error and keeps serving', { timeout: 20000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpt-hostile-template-'));
  try {
    const src = fixturePath('tiny-neox-vocab');
    copyFileSync(join(src, 'config.json'), join(dir, 'config.json'));
    symlinkSync(join(src, 'model.safetensors'), join(dir, 'model.safetensors'));
    for (const f of ['special_tokens_map.json', 'generation_config.json']) {
      copyFileSync(fixturePath(`mpt-configs/mpt-7b-chat.${f}`), join(dir, f));
    }
    const hostile = '{% for m in messages %}{{ m.content }}{% endfor %}{{ range(1000000000) | length }}';
    writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify({ ...mptChatConfig, chat_template: hostile }));
    const served = await loadServedModel(dir, { backend: 'reference', onNote: () => {} });
    const server = new MptServer(served, { port: 0, host: '127.0.0.1' });
    const { url } = await server.listen();
    try {
      const post = (path: string, body: unknown) =>
        fetch(`${url}${path}`, {
          method: 'POST',
          headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify(body),
        });
      const models = (await (await fetch(`${url}/v1/models`)).json()) as { data: { id: string }[] };
      const model = models.data[0]!.id;
      const bad = await post('/v1/chat/completions', {
        model,
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 2,
      });
      assert.ok(bad.status >= 400, `status ${bad.status}`);
      const err = (await bad.json()) as { error?: { message?: string } };
      assert.match(err.error?.message ?? '', /range\(\)/);
      const next = await post('/v1/completions', { model, prompt: 'hello', max_tokens: 2 });
      assert.equal(next.status, 200);
      assert.equal(((await next.json()) as { choices: unknown[] }).choices.length, 1);
    } finally {
      await server.shutdown(0);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
