/**
 * The worker thread behind PromptEncoder: its own copy of the served tokenizer (built from the
 * same constructor arguments), encoding one text per message.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { MptTokenizer } from '../runtime/tokenizer.js';

export interface EncodeJob {
  id: number;
  text: string;
}
export type EncodeReply = { id: number; ids: Int32Array<ArrayBuffer> } | { id: number; error: string };

// The construction arrives as JSON text: one string is cheap to hand over, again after a restart.
const [json, side, source] = JSON.parse(workerData as string) as MptTokenizer['construction'];
const tokenizer = new MptTokenizer(json, side, source);
const port = parentPort!;

port.on('message', (job: EncodeJob) => {
  let reply: EncodeReply;
  try {
    reply = { id: job.id, ids: Int32Array.from(tokenizer.encode(job.text)) };
  } catch (e) {
    reply = { id: job.id, error: e instanceof Error ? e.message : String(e) };
  }
  port.postMessage(reply, 'ids' in reply ? [reply.ids.buffer] : []);
});
