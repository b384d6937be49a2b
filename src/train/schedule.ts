/**
 * Learning-rate schedules as composer defines them (llm-foundry recipes): the multiplier of the
 * initial lr at a step. Warmup is linear from 0; `alpha_f` is the final fraction of the lr.
 * - cosine_with_warmup: after warmup, α(τ) = alpha_f + (1 − alpha_f)·(1 + cos(π·τ))/2, τ ∈ [0, 1].
 * - linear_decay_with_warmup: after warmup, 1 + (alpha_f − 1)·τ.
 * - constant_with_warmup: 1 after warmup.
 */
import { ConfigError } from '../errors.js';

export type ScheduleName = 'cosine_with_warmup' | 'linear_decay_with_warmup' | 'constant_with_warmup';

export interface ScheduleConfig {
  name: ScheduleName;
  /** Warmup length in optimizer steps. */
  warmupSteps: number;
  alphaF: number;
}

export function parseScheduleName(name: string): ScheduleName {
  const aliases: Record<string, ScheduleName> = {
    cosine_with_warmup: 'cosine_with_warmup',
    cosine: 'cosine_with_warmup',
    linear_decay_with_warmup: 'linear_decay_with_warmup',
    linear: 'linear_decay_with_warmup',
    constant_with_warmup: 'constant_with_warmup',
    constant: 'constant_with_warmup',
  };
  const n = aliases[name];
  if (!n)
    throw new ConfigError(
      `scheduler "${name}" is not supported (cosine_with_warmup, linear_decay_with_warmup, constant_with_warmup)`,
    );
  return n;
}

/** lr multiplier at `step` (0-based: the multiplier used by the step-th update) of `totalSteps`. */
export function lrMultiplier(s: ScheduleConfig, step: number, totalSteps: number): number {
  if (s.warmupSteps > 0 && step < s.warmupSteps) return step / s.warmupSteps;
  if (s.name === 'constant_with_warmup') return 1;
  const span = Math.max(1, totalSteps - s.warmupSteps);
  const tau = Math.min(1, Math.max(0, (step - s.warmupSteps) / span));
  if (s.name === 'linear_decay_with_warmup') return 1 + (s.alphaF - 1) * tau;
  return s.alphaF + (1 - s.alphaF) * 0.5 * (1 + Math.cos(Math.PI * tau));
}
