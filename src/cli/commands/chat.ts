/** `mpt chat [MODEL]`: an interactive conversation on stdin/stdout. */
import { createInterface } from 'node:readline';
import { InputError, MptError } from '../../errors.js';
import { ChatSession } from '../../runtime/chat-session.js';
import { parseArgs } from '../args.js';
import {
  loadModelForCli,
  missingTokenizerError,
  MODEL_AND_SAMPLING_HELP,
  MODEL_OPTIONS,
  SAMPLING_OPTIONS,
  samplingFromArgs,
  splitModelArg,
  writeOut,
} from '../model-options.js';
import { writeUserFile } from '../user-files.js';

export const summary = 'chat with a model (interactive; stdin/stdout)';
export const help = `usage: mpt chat [MODEL] [options]

Reads one message per line from stdin and streams each reply to stdout, followed by a newline.
The conversation is kept within the context: when it overflows, the oldest turns are dropped
(the system prompt stays). Works with a terminal and with piped stdin.

  /reset        forget the conversation
  /save FILE    write the messages as JSON ({"messages": [...]})
  /help         list these commands
  /exit         leave (as does Ctrl-D / end of input)
  Ctrl-C        stop the current reply (at the prompt: press twice to leave)

      --system TEXT         system prompt
${MODEL_AND_SAMPLING_HELP}`;

const COMMANDS_HELP = '/reset  /save FILE  /help  /exit   (Ctrl-C stops a reply, Ctrl-D leaves)';

/**
 * What a chat with a model without a chat template is: the turns as plain "User:"/"Assistant:"
 * lines that the model continues. The shipped model was trained on stories only, so a new user's
 * first `mpt chat` (the help names it) gets story text back; said so, with where chat works.
 */
export function plainChatNote(shipped: boolean): string {
  const what = shipped
    ? 'the shipped model is a small story model, not tuned for chat: its replies continue the text as a story'
    : 'a model not tuned for chat replies by continuing the text';
  return (
    `note: no chat template, so each turn goes to the model as "User: …" / "Assistant:" lines; ${what} ` +
    '(a chat model such as MPT-7B-Chat answers turns; --template chatml|instruct chooses a format)'
  );
}

export async function run(argv: string[]): Promise<number> {
  const { positionals, options } = parseArgs(
    argv,
    { ...MODEL_OPTIONS, ...SAMPLING_OPTIONS, system: { type: 'string' } },
    'chat',
  );
  const { model: modelPath, rest } = splitModelArg(positionals);
  if (rest.length > 0)
    throw new InputError(
      `unexpected argument "${rest[0]}": mpt chat reads messages from stdin${modelPath === undefined ? ' (is the model path right?)' : ''}`,
    );
  const quiet = options['quiet'] === true;
  const model = await loadModelForCli(modelPath, options);
  if (!model.hasTokenizer) {
    await model.dispose();
    throw missingTokenizerError(model);
  }
  const session = new ChatSession(model, {
    ...samplingFromArgs(options),
    system: options['system'] as string | undefined,
  });
  const tty = process.stdin.isTTY === true;
  const note = (m: string) => {
    if (!quiet) process.stderr.write(m + '\n');
  };
  note(
    `chat with ${model.path} (prompt format: ${model.format.name}, context ${session.model.contextLength}). ${COMMANDS_HELP}`,
  );
  if (model.format.name === 'none') note(plainChatNote(modelPath === undefined));

  const rl = createInterface({ input: process.stdin, output: tty ? process.stdout : undefined, terminal: tty });
  const queue: string[] = [];
  let ended = false;
  let wake: (() => void) | undefined;
  let current: AbortController | undefined;
  let lastIdleInterrupt = 0;

  const interrupt = () => {
    if (current) {
      current.abort();
      return;
    }
    const now = Date.now();
    if (now - lastIdleInterrupt < 2000) {
      ended = true;
      queue.length = 0;
      rl.close();
      wake?.();
      return;
    }
    lastIdleInterrupt = now;
    process.stderr.write('\n(press Ctrl-C again or Ctrl-D to leave)\n');
    if (tty) rl.prompt();
  };
  rl.on('SIGINT', interrupt);
  process.on('SIGINT', interrupt);
  rl.on('line', (line) => {
    queue.push(line);
    wake?.();
  });
  rl.on('close', () => {
    ended = true;
    wake?.();
  });
  if (tty) {
    rl.setPrompt('> ');
    rl.prompt();
  }

  try {
    for (;;) {
      if (queue.length === 0) {
        if (ended) break;
        await new Promise<void>((r) => {
          wake = r;
        });
        wake = undefined;
        continue;
      }
      const line = queue.shift()!;
      const text = line.replace(/\r$/, '');
      if (text.trim() === '') {
        if (tty) rl.prompt();
        continue;
      }
      if (text.startsWith('/')) {
        const cmd = text.trim().split(/\s+/)[0];
        if (cmd === '/exit' || cmd === '/quit') break;
        if (cmd === '/reset') {
          session.reset();
          note('(conversation reset)');
        } else if (cmd === '/help') note(COMMANDS_HELP);
        else if (cmd === '/save') {
          const file = text.trim().slice('/save'.length).trim();
          if (!file) note('usage: /save FILE');
          else {
            try {
              writeUserFile(file, JSON.stringify(session.toJSON(), null, 2) + '\n');
              note(`(saved ${session.messages.length} messages to ${file})`);
            } catch (e) {
              if (!(e instanceof MptError)) throw e;
              process.stderr.write(`mpt chat: could not save: ${e.message}\n`);
            }
          }
        } else note(`unknown command ${cmd}; ${COMMANDS_HELP}`);
        if (tty) rl.prompt();
        continue;
      }

      current = new AbortController();
      try {
        const stream = session.send(text, { signal: current.signal });
        if (session.lastDropped > 0) note(`(dropped ${session.lastDropped} old messages to fit the context)`);
        for await (const chunk of stream) writeOut(chunk.text);
        const result = await stream.result;
        writeOut('\n');
        if (result.finishReason === 'abort') note('(reply stopped)');
        else if (result.finishReason === 'length') note('(reply cut: max tokens or context reached)');
      } catch (e) {
        if (!(e instanceof MptError)) throw e;
        writeOut('\n');
        process.stderr.write(`mpt chat: ${e.message}\n`);
      } finally {
        current = undefined;
      }
      if (tty) rl.prompt();
    }
  } finally {
    process.off('SIGINT', interrupt);
    rl.close();
    session.dispose();
    await model.dispose();
  }
  return 0;
}
