/**
 * Optimizers as llm-foundry / PyTorch define them, on f32 parameters with f32 state:
 * - DecoupledLionW (llm-foundry `DecoupledLionW`): p ← p·(1 − wd·lr/initial_lr); u = sign(β1·m + (1−β1)·g);
 *   p ← p − lr·u; m ← β2·m + (1−β2)·g. Weight decay is decoupled and NOT multiplied by lr.
 * - DecoupledAdamW (composer `DecoupledAdamW`): AdamW whose decay is p ← p·(1 − wd·lr/initial_lr).
 * - AdamW (torch.optim.AdamW): p ← p·(1 − lr·wd), then the bias-corrected Adam step.
 * Plus gradient clipping by global norm. The state (moments, step count) is exposed for checkpoints.
 */
import { ConfigError } from '../errors.js';
import type { Param } from './model.js';

export type OptimizerName = 'decoupled_lionw' | 'decoupled_adamw' | 'adamw';

export interface OptimizerConfig {
  name: OptimizerName;
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
}

/** llm-foundry's defaults for each optimizer. */
export function optimizerConfig(name: string, o: Partial<Omit<OptimizerConfig, 'name'>> = {}): OptimizerConfig {
  if (name !== 'decoupled_lionw' && name !== 'decoupled_adamw' && name !== 'adamw') {
    throw new ConfigError(`optimizer "${name}" is not supported (decoupled_lionw, decoupled_adamw, adamw are)`);
  }
  const lion = name === 'decoupled_lionw';
  return {
    name,
    lr: o.lr ?? (lion ? 1e-4 : 1e-3),
    betas: o.betas ?? (lion ? [0.9, 0.99] : [0.9, 0.999]),
    eps: o.eps ?? 1e-8,
    weightDecay: o.weightDecay ?? (name === 'adamw' ? 1e-2 : lion ? 0 : 1e-5),
  };
}

export interface OptimizerState {
  step: number;
  /** Per parameter name: first moment (and second moment for Adam variants). */
  m: Map<string, Float32Array>;
  v: Map<string, Float32Array>;
}

export class Optimizer {
  readonly config: OptimizerConfig;
  readonly state: OptimizerState = { step: 0, m: new Map(), v: new Map() };

  constructor(config: OptimizerConfig) {
    this.config = config;
  }

  /** One update of every parameter with a gradient, at learning rate `lr`. */
  step(params: Param[], lr: number): void {
    const {
      name,
      betas: [b1, b2],
      eps,
      weightDecay: wd,
    } = this.config;
    const initialLr = this.config.lr;
    this.state.step++;
    const t = this.state.step;
    for (const p of params) {
      const g = p.grad;
      if (!p.trainable || !g) continue;
      const x = p.data,
        n = x.length;
      let m = this.state.m.get(p.name);
      if (!m) {
        m = new Float32Array(n);
        this.state.m.set(p.name, m);
      }
      if (name === 'decoupled_lionw') {
        const decay = wd !== 0 ? 1 - (wd * lr) / initialLr : 1;
        const c1 = 1 - b1,
          c2 = 1 - b2;
        for (let i = 0; i < n; i++) {
          const gi = g[i]!,
            mi = m[i]!;
          let xi = x[i]!;
          if (decay !== 1) xi = Math.fround(xi * decay);
          // torch.lerp(m, g, 1 − β1) = m + (1 − β1)(g − m)
          const c = Math.fround(mi + c1 * (gi - mi));
          const u = c > 0 ? 1 : c < 0 ? -1 : 0;
          x[i] = xi - lr * u;
          m[i] = mi + c2 * (gi - mi);
        }
        continue;
      }
      let v = this.state.v.get(p.name);
      if (!v) {
        v = new Float32Array(n);
        this.state.v.set(p.name, v);
      }
      const decay = name === 'adamw' ? 1 - lr * wd : 1 - (wd * lr) / initialLr;
      const bc1 = 1 - b1 ** t,
        bc2 = 1 - b2 ** t;
      const stepSize = lr / bc1,
        sqrtBc2 = Math.sqrt(bc2);
      for (let i = 0; i < n; i++) {
        const gi = g[i]!;
        const xi = Math.fround(x[i]! * decay);
        const mi = Math.fround(m[i]! * b1 + (1 - b1) * gi);
        const vi = Math.fround(v[i]! * b2 + (1 - b2) * gi * gi);
        m[i] = mi;
        v[i] = vi;
        x[i] = xi - (stepSize * mi) / (Math.sqrt(vi) / sqrtBc2 + eps);
      }
    }
  }
}

/** Global L2 norm of all gradients (entries counted with their multiplicity). */
export function gradNorm(params: Param[]): number {
  let s = 0;
  for (const p of params) {
    const g = p.grad;
    if (!p.trainable || !g) continue;
    if (p.multiplicity) {
      for (let i = 0; i < g.length; i++) s += p.multiplicity(i) * g[i]! * g[i]!;
    } else {
      for (let i = 0; i < g.length; i++) s += g[i]! * g[i]!;
    }
  }
  return Math.sqrt(s);
}

/** Scales gradients so their global norm is at most maxNorm (torch clip_grad_norm_); returns the norm before. */
export function clipGradNorm(params: Param[], maxNorm: number): number {
  const norm = gradNorm(params);
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1)
    for (const p of params) if (p.trainable && p.grad) for (let i = 0; i < p.grad.length; i++) p.grad[i]! *= coef;
  return norm;
}
