/**
 * Server metrics in Prometheus' text exposition format (version 0.0.4): request counts by
 * endpoint and status, prompt and generated tokens, queue depth, active sequences, decode rate,
 * time to first token.
 */
import type { SchedulerStats } from './scheduler.js';

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

function num(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

/** Time-to-first-token buckets (seconds). */
const TTFT_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

export class Metrics {
  private readonly requests = new Map<string, number>();
  promptTokens = 0;
  completionTokens = 0;
  private readonly ttftCounts = new Array<number>(TTFT_BUCKETS.length).fill(0);
  private ttftSum = 0;
  private ttftCount = 0;
  readonly startedAt = Date.now();

  /** Counts one finished HTTP request. */
  countRequest(endpoint: string, status: number): void {
    const key = `${endpoint}\u0000${status}`;
    this.requests.set(key, (this.requests.get(key) ?? 0) + 1);
  }

  observeTtft(seconds: number): void {
    this.ttftSum += seconds;
    this.ttftCount++;
    for (let i = 0; i < TTFT_BUCKETS.length; i++) if (seconds <= TTFT_BUCKETS[i]!) this.ttftCounts[i]!++;
  }

  render(s: SchedulerStats, extra: { parallel: number; queueLimit: number }): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    };
    const reqLines: string[] = [];
    for (const [key, n] of [...this.requests].sort()) {
      const [endpoint, status] = key.split('\u0000') as [string, string];
      reqLines.push(`mpt_requests_total{endpoint="${escapeLabel(endpoint)}",status="${status}"} ${n}`);
    }
    metric('mpt_requests_total', 'counter', 'HTTP requests answered, by endpoint and status code.', reqLines);
    metric('mpt_prompt_tokens_total', 'counter', 'Prompt tokens of accepted generation requests.', [
      `mpt_prompt_tokens_total ${this.promptTokens}`,
    ]);
    metric('mpt_generation_tokens_total', 'counter', 'Tokens generated for requests.', [
      `mpt_generation_tokens_total ${this.completionTokens}`,
    ]);
    metric('mpt_prefill_tokens_total', 'counter', 'Prompt tokens run through the model.', [
      `mpt_prefill_tokens_total ${s.promptTokens}`,
    ]);
    metric(
      'mpt_prefix_cache_tokens_total',
      'counter',
      'Prompt tokens found in a kept cache (--prefix-cache) instead of being run.',
      [`mpt_prefix_cache_tokens_total ${s.cachedPromptTokens}`],
    );
    metric('mpt_decode_steps_total', 'counter', 'Batched forward steps run.', [`mpt_decode_steps_total ${s.steps}`]);
    metric('mpt_queue_depth', 'gauge', 'Sequences waiting for a decoding slot.', [`mpt_queue_depth ${s.queued}`]);
    metric('mpt_queue_limit', 'gauge', 'Most sequences allowed to wait (--queue).', [
      `mpt_queue_limit ${extra.queueLimit}`,
    ]);
    metric('mpt_active_sequences', 'gauge', 'Sequences in the batched decode loop.', [
      `mpt_active_sequences ${s.active}`,
    ]);
    metric('mpt_parallel_limit', 'gauge', 'Most sequences decoded at once (--parallel).', [
      `mpt_parallel_limit ${extra.parallel}`,
    ]);
    metric('mpt_batch_size', 'gauge', 'Sequences in the last forward step.', [`mpt_batch_size ${s.lastBatchSize}`]);
    metric(
      'mpt_decode_tokens_per_second',
      'gauge',
      'Tokens generated per second over the last 5 seconds, all sequences together.',
      [`mpt_decode_tokens_per_second ${num(Math.round(s.decodeTokensPerSecond * 1000) / 1000)}`],
    );
    const ttft: string[] = [];
    TTFT_BUCKETS.forEach((b, i) => {
      ttft.push(`mpt_time_to_first_token_seconds_bucket{le="${b}"} ${this.ttftCounts[i]}`);
    });
    ttft.push(`mpt_time_to_first_token_seconds_bucket{le="+Inf"} ${this.ttftCount}`);
    ttft.push(
      `mpt_time_to_first_token_seconds_sum ${num(this.ttftSum)}`,
      `mpt_time_to_first_token_seconds_count ${this.ttftCount}`,
    );
    metric(
      'mpt_time_to_first_token_seconds',
      'histogram',
      'Seconds from receiving a generation request to its first token.',
      ttft,
    );
    metric('mpt_uptime_seconds', 'gauge', 'Seconds since the server started.', [
      `mpt_uptime_seconds ${Math.floor((Date.now() - this.startedAt) / 1000)}`,
    ]);
    return out.join('\n') + '\n';
  }
}
