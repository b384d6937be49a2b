/**
 * What mpt-ts asks of its host, so that the engine runs the same in Node and in a browser tab:
 * node.ts and browser.ts implement it, index.ts picks one (see docs/platform.md).
 */

export interface Platform {
  readonly name: 'node' | 'browser';
  /** Logical cores this process or page may use (the default worker count). */
  hardwareConcurrency(): number;
  /** Bytes of RAM of the machine, where the host says (a browser does not). */
  totalMemory(): number | undefined;
  /** Resolves once timers, I/O and other queued tasks have had a turn. */
  yieldToEventLoop(): Promise<void>;
  /** An environment variable (a browser has none). */
  env(name: string): string | undefined;
  /** The bytes at `url` (a file: URL in Node, an http(s): URL in a browser), typically next to import.meta.url. */
  readBytes(url: URL): Promise<Uint8Array<ArrayBuffer>>;
  /** The same without waiting, where the host can read synchronously (Node); undefined where it cannot. */
  readBytesSync(url: URL): Uint8Array<ArrayBuffer> | undefined;
  /**
   * Engine settings to make before the first wasm kernel is compiled, where the host allows them
   * (Node: V8 flags). A browser decides relaxed SIMD by validating the module instead.
   */
  prepareWasmEngine(options: { relaxedSimd: boolean }): void;
  /**
   * Whether memory (SharedArrayBuffer, shared wasm memories) can be sent to workers: always in
   * Node, only in a cross-origin isolated page (COOP/COEP headers) in a browser.
   */
  canShareMemoryWithWorkers(): boolean;
  /**
   * Whether the thread that loads models may block in Atomics.wait: Node's main thread may; a
   * page's may not (a Web Worker could, but the engine is driven from the page).
   */
  mainThreadMayBlock(): boolean;
  /** Starts the module at `url` (built JS next to import.meta.url) as a worker thread. */
  startWorker(url: URL): PlatformWorker;
  /** Inside a worker started by `startWorker`: its channel to the thread that started it. */
  workerPort(): WorkerPort;
}

export interface WorkerListeners {
  message(data: unknown): void;
  /** The worker threw (or its script failed to load). */
  error(err: Error): void;
  /** The worker thread ended (Node; a browser does not report it). */
  exit(code: number): void;
}

/** A worker thread, seen from the thread that started it. */
export interface PlatformWorker {
  /** Messages sent before the worker listens are kept until it does. */
  postMessage(message: unknown): void;
  /** Adds listeners; the returned function removes them. */
  listen(listeners: WorkerListeners): () => void;
  /** Whether an idle worker keeps the process alive (Node; nothing in a browser). */
  ref(): void;
  unref(): void;
  terminate(): Promise<void>;
}

/** The thread that started this worker, seen from inside the worker. */
export interface WorkerPort {
  onMessage(listener: (data: unknown) => void): void;
  postMessage(message: unknown): void;
}
