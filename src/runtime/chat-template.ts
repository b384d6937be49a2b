/**
 * Prompt formats: how a list of chat messages becomes the text a model continues.
 *
 * - `jinja`: the `chat_template` of tokenizer_config.json, rendered with @huggingface/jinja the
 *   way transformers' `apply_chat_template` renders it (variables `messages`,
 *   `add_generation_prompt`, the special-token strings `bos_token`, `eos_token`, ...; trim_blocks
 *   and lstrip_blocks; nothing stripped afterwards). MPT-7B-Chat's template has quirks that this
 *   reproduces as-is: no `<|im_end|>` after the system turn, turns joined by "\n", the
 *   generation prompt emitted after every message when `add_generation_prompt` is true, and EOS
 *   after past assistant turns when it is false.
 * - `chatml`: built-in ChatML for MPT chat models without a template:
 *   `<|im_start|>{role}\n{content}<|im_end|>\n` per turn, then `<|im_start|>assistant\n`; when
 *   no system message is given, MPT-7B-Chat's default system prompt is used.
 * - `instruct`: the Dolly/Alpaca format MPT-7B-Instruct was tuned on.
 * - `none`: the prompt as given; for chat, a plain "User: … / Assistant: …" transcript.
 */
import { Template } from '@huggingface/jinja';
import { InputError, quoteValue } from '../errors.js';
import { checkTemplateFilters, renderBounded, type TemplateNode } from './template-budget.js';
import type { MptTokenizer } from './tokenizer.js';

/** One chat message. */
export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | (string & {});
  content: string;
}

export type TemplateName = 'jinja' | 'chatml' | 'instruct' | 'none';

/** A prompt format: renders messages and says how its turns end. */
export interface PromptFormat {
  readonly name: TemplateName;
  /** Renders messages; with `addGenerationPrompt` (default true) the text ends where the assistant's reply starts. */
  render(messages: readonly ChatMessage[], options?: { addGenerationPrompt?: boolean }): string;
  /** Turns a single prompt into the text to continue (`mpt generate` with a chat or instruct model). */
  renderPrompt(prompt: string, system?: string): string;
  /** Strings that end a reply in this format (besides the tokenizer's stop ids). */
  readonly stopStrings: readonly string[];
  /** Token strings that end a reply (e.g. `<|im_end|>`), resolved to ids with the tokenizer. */
  readonly stopTokens: readonly string[];
  /**
   * A `jinja` format's template and variables: what rebuilds it elsewhere (`jinjaFormat(t.template,
   * t.specialTokens)`), e.g. in the server's worker thread, since a template's render costs up to
   * its work budget whatever the messages' size.
   */
  readonly jinja?: JinjaSource;
  /** A built-in format's arguments: what rebuilds it elsewhere (`builtinFormat`), as `jinja` does a template. */
  readonly builtin?: BuiltinSource;
}

/** The arguments of a built-in format (plain JSON, cloneable). */
export type BuiltinSource = { name: 'chatml'; defaultSystem?: string } | { name: 'instruct' } | { name: 'none' };

/** The built-in format `source` describes. */
export function builtinFormat(source: BuiltinSource): PromptFormat {
  if (source.name === 'chatml') return chatmlFormat(source.defaultSystem);
  return source.name === 'instruct' ? instructFormat() : plainFormat();
}

/** The arguments of `jinjaFormat` (plain JSON, cloneable). */
export interface JinjaSource {
  readonly template: string;
  readonly specialTokens: Readonly<Record<string, string | string[]>>;
}

/** MPT-7B-Chat's default system prompt (from its chat_template). */
export const MPT_CHAT_DEFAULT_SYSTEM =
  'A conversation between a user and an LLM-based AI assistant. The assistant gives helpful and honest answers.';

/** The intro line of the Dolly-style instruction format. */
export const INSTRUCT_INTRO =
  'Below is an instruction that describes a task. Write a response that appropriately completes the request.';

function checkMessages(messages: readonly ChatMessage[]): void {
  if (!Array.isArray(messages) || messages.length === 0) throw new InputError('messages must be a non-empty list');
  for (const m of messages) {
    if (typeof m !== 'object' || m === null || typeof m.role !== 'string' || typeof m.content !== 'string') {
      throw new InputError('every message needs a string "role" and a string "content"');
    }
  }
}

/**
 * Renders a Hugging Face chat template as transformers does. `specialTokens` are passed as
 * template variables (`bos_token`, `eos_token`, ...); the template's `raise_exception(msg)`
 * becomes an InputError, and so does a template that does too much work (template-budget.ts).
 */
export function renderJinjaChatTemplate(
  template: string,
  messages: readonly ChatMessage[],
  options: {
    addGenerationPrompt?: boolean;
    specialTokens?: Readonly<Record<string, string | string[]>>;
    extra?: Record<string, unknown>;
  } = {},
): string {
  return renderProgram(compileChatTemplate(template), messages, options);
}

function renderProgram(
  program: TemplateNode,
  messages: readonly ChatMessage[],
  options: Parameters<typeof renderJinjaChatTemplate>[2] = {},
): string {
  checkMessages(messages);
  return renderBounded(program, {
    ...(options.specialTokens ?? {}),
    ...(options.extra ?? {}),
    messages: messages.map((m) => ({ ...m })),
    add_generation_prompt: options.addGenerationPrompt ?? false,
  });
}

/** Parses a chat template and refuses what cannot be rendered within bounds (see template-budget.ts). */
function compileChatTemplate(template: string): TemplateNode {
  let parsed: TemplateNode;
  try {
    parsed = new Template(template).parsed;
  } catch (e) {
    throw new InputError(`the chat_template cannot be parsed: ${(e as Error).message}`);
  }
  checkTemplateFilters(parsed);
  return parsed;
}

/** A `jinja` format around a template string. */
export function jinjaFormat(
  template: string,
  specialTokens: Readonly<Record<string, string | string[]>> = {},
): PromptFormat {
  // Compiled once, up front, so a broken or refused template fails at load time. (Rendering
  // leaves the parsed tree as it was.)
  const program = compileChatTemplate(template);
  const usesImEnd = template.includes('<|im_end|>');
  return {
    name: 'jinja',
    render: (messages, o = {}) =>
      renderProgram(program, messages, {
        addGenerationPrompt: o.addGenerationPrompt ?? true,
        specialTokens,
      }),
    renderPrompt(prompt, system) {
      const msgs: ChatMessage[] = system !== undefined ? [{ role: 'system', content: system }] : [];
      msgs.push({ role: 'user', content: prompt });
      return this.render(msgs, { addGenerationPrompt: true });
    },
    stopStrings: usesImEnd ? ['<|im_end|>'] : [],
    stopTokens: usesImEnd ? ['<|im_end|>'] : [],
    jinja: { template, specialTokens },
  };
}

/** Built-in ChatML. */
export function chatmlFormat(defaultSystem: string | undefined = MPT_CHAT_DEFAULT_SYSTEM): PromptFormat {
  return {
    name: 'chatml',
    render(messages, o = {}) {
      checkMessages(messages);
      const msgs =
        messages[0]!.role !== 'system' && defaultSystem !== undefined
          ? [{ role: 'system', content: defaultSystem }, ...messages]
          : messages;
      let s = '';
      for (const m of msgs) s += `<|im_start|>${m.role}\n${m.content}<|im_end|>\n`;
      if (o.addGenerationPrompt ?? true) s += '<|im_start|>assistant\n';
      return s;
    },
    renderPrompt(prompt, system) {
      const msgs: ChatMessage[] = system !== undefined ? [{ role: 'system', content: system }] : [];
      msgs.push({ role: 'user', content: prompt });
      return this.render(msgs);
    },
    stopStrings: ['<|im_end|>'],
    stopTokens: ['<|im_end|>'],
    builtin: { name: 'chatml', defaultSystem },
  };
}

/**
 * The Dolly-style instruction format: intro, "### Instruction:", the instruction,
 * "### Response:". A system message replaces the intro; earlier exchanges are kept as
 * instruction/response pairs.
 */
export function instructFormat(): PromptFormat {
  const block = (instruction: string) => `### Instruction:\n${instruction}\n\n### Response:\n`;
  return {
    name: 'instruct',
    render(messages) {
      checkMessages(messages);
      let intro = INSTRUCT_INTRO;
      let s = '';
      for (const m of messages) {
        if (m.role === 'system') intro = m.content;
        else if (m.role === 'assistant') s += `${m.content}\n\n`;
        else s += block(m.content);
      }
      // The format has no end-of-turn marker: an unanswered instruction always ends with the
      // response header, with or without a generation prompt.
      return `${intro}\n\n${s}`;
    },
    renderPrompt(prompt, system) {
      return `${system ?? INSTRUCT_INTRO}\n\n${block(prompt)}`;
    },
    stopStrings: ['### Instruction:'],
    stopTokens: [],
    builtin: { name: 'instruct' },
  };
}

/** No format: the prompt as given; chat becomes a plain transcript. */
export function plainFormat(): PromptFormat {
  return {
    name: 'none',
    render(messages, o = {}) {
      checkMessages(messages);
      let s = '';
      for (const m of messages) {
        if (m.role === 'system') s += `${m.content}\n\n`;
        // A reply generated after "Assistant:" usually starts with its own space: keep it as is,
        // so the re-rendered history tokenizes like the generated text did.
        else if (m.role === 'assistant') s += `Assistant:${/^\s/.test(m.content) ? '' : ' '}${m.content}\n`;
        else s += `User: ${m.content}\n`;
      }
      if (o.addGenerationPrompt ?? true) s += 'Assistant:';
      return s;
    },
    renderPrompt(prompt, system) {
      return system !== undefined ? `${system}\n\n${prompt}` : prompt;
    },
    stopStrings: ['\nUser:'],
    stopTokens: [],
    builtin: { name: 'none' },
  };
}

/** What detection looks at. */
export interface FormatHints {
  tokenizer?: MptTokenizer | null;
  /** config.json as read (tokenizer_name, _name_or_path, ...). */
  configRaw?: Record<string, unknown>;
  /** The model path (its name hints "chat" / "instruct"). */
  path?: string;
}

/**
 * Picks the prompt format of a model: its chat_template when present; built-in ChatML when the
 * tokenizer has `<|im_start|>` or the config / path names a chat model; the instruct format when
 * they name an instruct model; otherwise none.
 */
export function detectPromptFormat(hints: FormatHints): PromptFormat {
  const tok = hints.tokenizer ?? undefined;
  if (tok?.chatTemplate) return jinjaFormat(tok.chatTemplate, tok.specialTokenStrings);
  if (tok && tok.tokenToId('<|im_start|>') !== undefined) return chatmlFormat();
  const names = [
    hints.path ?? '',
    typeof hints.configRaw?.['_name_or_path'] === 'string' ? (hints.configRaw['_name_or_path'] as string) : '',
    typeof hints.configRaw?.['tokenizer_name'] === 'string' ? (hints.configRaw['tokenizer_name'] as string) : '',
  ]
    .join(' ')
    .toLowerCase();
  if (/chat|chatml/.test(names)) return chatmlFormat();
  if (/instruct/.test(names)) return instructFormat();
  return plainFormat();
}

/**
 * Resolves a `--template` choice: 'auto' (or undefined) detects; 'chatml', 'instruct' and 'none'
 * pick the built-in format; 'jinja' requires the tokenizer's chat_template.
 */
export function resolvePromptFormat(choice: string | undefined, hints: FormatHints): PromptFormat {
  switch (choice ?? 'auto') {
    case 'auto':
      return detectPromptFormat(hints);
    case 'chatml':
      return chatmlFormat();
    case 'instruct':
      return instructFormat();
    case 'none':
      return plainFormat();
    case 'jinja': {
      const tok = hints.tokenizer;
      if (!tok?.chatTemplate)
        throw new InputError('--template jinja: the model has no chat_template in tokenizer_config.json');
      return jinjaFormat(tok.chatTemplate, tok.specialTokenStrings);
    }
    default:
      throw new InputError(`unknown template ${quoteValue(choice)} (auto, chatml, instruct, none, jinja)`);
  }
}

/** Resolves a format's stop tokens to ids present in the tokenizer. */
export function formatStopIds(format: PromptFormat, tokenizer: MptTokenizer | null | undefined): number[] {
  if (!tokenizer) return [];
  const ids: number[] = [];
  for (const t of format.stopTokens) {
    const id = tokenizer.tokenToId(t);
    if (id !== undefined) ids.push(id);
  }
  return ids;
}
