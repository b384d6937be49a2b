/**
 * Sampling, as the runtime and its users see it. The implementation lives with the backends
 * (src/backends/sampling/) because a backend may choose tokens itself, in its worker threads or on
 * a GPU, right after the forward pass (`ForwardOptions.sample`); both paths run the same code.
 */
export * from '../backends/sampling/sampler.js';
