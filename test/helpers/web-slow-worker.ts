/**
 * A Web Worker (test/web-wasm.test.ts) whose module evaluation waits before it listens, as one
 * whose imports load something at the top level would; then it echoes every message.
 */
import { platform } from '../../src/platform/index.js';

await new Promise((resolve) => setTimeout(resolve, 300));
const port = platform.workerPort();
port.onMessage((m) => port.postMessage(m));
