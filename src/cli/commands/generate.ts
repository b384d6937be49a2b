/** `mpt generate [MODEL] "prompt"`: streams a continuation to stdout. */
import { fstatSync } from 'node:fs';
import { InputError } from '../../errors.js';
import { formatStopIds } from '../../runtime/chat-template.js';
import { checkPromptCachePath } from '../../runtime/prompt-cache.js';
import type { GenerateOptions, GenerateResult } from '../../runtime/generate.js';
import { parseArgs, parseTokenIds } from '../args.js';
import {
  LONG_CONTEXT_HELP,
  LONG_CONTEXT_OPTIONS,
  checkLongContextMemory,
  longContextNote,
  parseLongContextArgs,
  streamLongContext,
} from '../long-context-options.js';
import {
  loadModelForCli,
  missingTokenizerError,
  MODEL_AND_SAMPLING_HELP,
  MODEL_OPTIONS,
  readStdin,
  SAMPLING_OPTIONS,
  samplingFromArgs,
  splitModelArg,
  writeOut,
} from '../model-options.js';

export const summary = 'generate text from a prompt (streams to stdout)';
export const help = `usage: mpt generate [MODEL] [PROMPT] [options]

Continues PROMPT (or stdin when no prompt is given) and streams the new text to stdout; token
counts and speed go to stderr. In a terminal a plain prompt (no prompt format) is shown first,
so the text reads on from it; piped or redirected, stdout holds the new text only.

MODEL is a model folder or .gguf file; when the first argument is not an existing folder or .gguf
file, the shipped default model (models/default/) is used and every argument is part of the
prompt (but a first argument that looks like a path, with a / or ending in .gguf, .safetensors or
.bin, must be a model). With a chat or instruct model the prompt is wrapped in its prompt format
(see --template; --template none sends it as is).

      --system TEXT         system prompt for chat/instruct formats
      --ids 1,2,3           feed these token ids as the prompt (prints ids when the model has no tokenizer)
      --ignore-eos          never choose or stop at the end-of-text token (runs to --max-tokens)
${MODEL_AND_SAMPLING_HELP}
${LONG_CONTEXT_HELP}`;

function stats(r: GenerateResult): string {
  const t = r.timings;
  const secs = (t.prefillMs + t.decodeMs) / 1000;
  const speed = Number.isFinite(t.tokensPerSecond) ? `${t.tokensPerSecond.toFixed(1)} tokens/s` : 'n/a tokens/s';
  const prompt = Number.isFinite(t.promptTokensPerSecond) ? ` (${t.promptTokensPerSecond.toFixed(1)} tokens/s)` : '';
  return `prompt: ${r.usage.promptTokens} tokens${prompt}; generated: ${r.usage.completionTokens} tokens in ${secs.toFixed(2)} s, ${speed}; finish: ${r.finishReason}; seed: ${r.seed}`;
}

export async function run(argv: string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    {
      ...MODEL_OPTIONS,
      ...SAMPLING_OPTIONS,
      ...LONG_CONTEXT_OPTIONS,
      system: { type: 'string' },
      ids: { type: 'string' },
      'ignore-eos': { type: 'boolean' },
    },
    'generate',
  );
  const { model: modelPath, rest } = splitModelArg(positionals);
  const idsSpec = options['ids'] as string | undefined;
  if (idsSpec !== undefined && rest.length > 0) throw new InputError('give either a text prompt or --ids, not both');
  const gen: GenerateOptions = samplingFromArgs(options);
  const quiet = options['quiet'] === true;

  let promptText: string | undefined;
  if (idsSpec === undefined) {
    if (rest.length > 0) promptText = rest.join(' ');
    else {
      if (process.stdin.isTTY && !quiet) process.stderr.write('reading the prompt from stdin (end with Ctrl-D)\n');
      promptText = await readStdin();
    }
    if (promptText.length === 0) throw new InputError('the prompt is empty: give it as an argument or on stdin');
  }

  const lc = parseLongContextArgs(options);
  if (lc.promptCache !== undefined) checkPromptCachePath(lc.promptCache);
  await checkLongContextMemory(modelPath, options, lc);
  const model = await loadModelForCli(modelPath, options);
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.on('SIGINT', onSigint);
  try {
    let ids: number[];
    const system = options['system'] as string | undefined;
    if (promptText !== undefined) {
      if (!model.hasTokenizer) throw missingTokenizerError(model, '; or give the prompt as token ids (--ids 1,2,3)');
      const fmt = model.format;
      const text = fmt.name === 'none' && system === undefined ? promptText : fmt.renderPrompt(promptText, system);
      ids = model.tokenizer.encode(text);
      if (fmt.name !== 'none') {
        gen.stopStrings = [...new Set([...(gen.stopStrings ?? []), ...fmt.stopStrings])];
        gen.stopTokenIds = [...new Set([...model.tokenizer.stopIds, ...formatStopIds(fmt, model.tokenizer)])];
      }
    } else {
      ids = parseTokenIds(idsSpec!, '--ids');
    }
    if (options['ignore-eos'] === true) {
      // As llama.cpp's --ignore-eos: the end-of-text token is never chosen and never stops.
      const eos = new Set(model.tokenizer.stopIds);
      gen.stopTokenIds = (gen.stopTokenIds ?? model.tokenizer.stopIds).filter((id) => !eos.has(id));
      gen.bannedIds = [...(gen.bannedIds ?? []), ...eos];
    }
    const printIds = !model.hasTokenizer;
    const note = (m: string) => {
      if (!quiet) process.stderr.write(`note: ${m}\n`);
    };
    const stream = await streamLongContext(model, ids, { ...gen, signal: controller.signal }, lc, note);
    // "Once upon a time" continues as ", there was…": on a screen the story reads whole with its
    // start. Only there: a pipe gets the continuation alone, and a chat reply is no continuation.
    if (
      process.stdout.isTTY &&
      promptText !== undefined &&
      !printIds &&
      model.format.name === 'none' &&
      system === undefined
    )
      writeOut(promptText);
    let first = true;
    let lastText = '';
    for await (const chunk of stream) {
      if (printIds) {
        writeOut(`${first ? '' : ' '}${chunk.token}`);
        first = false;
      } else if (chunk.text) {
        writeOut(chunk.text);
        lastText = chunk.text;
      }
    }
    const result = await stream.result;
    const endsLine = printIds || lastText === '' || lastText.endsWith('\n');
    if (process.stdout.isTTY && !endsLine) writeOut('\n');
    else if (printIds) writeOut('\n');
    // The text itself stays exact on stdout; where stderr shows up on the same screen or file as an
    // unfinished last line (a terminal, or `2>&1`), the notes and statistics start on a line of their own.
    if (!quiet && !endsLine && !process.stdout.isTTY && sharesOutput()) process.stderr.write('\n');
    const lcNote = longContextNote(model, result);
    if (lcNote) note(lcNote);
    if (!quiet) process.stderr.write(stats(result) + '\n');
    return result.finishReason === 'abort' ? 130 : 0;
  } finally {
    process.off('SIGINT', onSigint);
    await model.dispose();
  }
}

/** Whether stderr is a terminal or the same file as stdout (so an unfinished stdout line would be continued). */
function sharesOutput(): boolean {
  if (process.stderr.isTTY) return true;
  try {
    const out = fstatSync(1),
      err = fstatSync(2);
    return out.dev === err.dev && out.ino === err.ino;
  } catch {
    return false;
  }
}
