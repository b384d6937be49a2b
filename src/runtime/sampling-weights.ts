/** The arithmetic of a sampling draw (see src/backends/sampling/weights.ts). */
export * from '../backends/sampling/weights.js';
