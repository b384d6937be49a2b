/**
 * Ctrl-C (SIGINT) or SIGTERM during a command whose work can be kept: the first asks it to stop
 * where nothing is lost (a training run saves a checkpoint after the step in progress); a second
 * ends the process at once, as the signal alone would have, with the shell's status for it.
 */

/** The shell's exit status for a process ended by `signal` (128 + its number). */
export function signalStatus(signal: NodeJS.Signals): number {
  return signal === 'SIGTERM' ? 143 : 130;
}

export interface Interrupt {
  /** Aborts at the first signal; its reason is the signal's name. */
  readonly signal: AbortSignal;
  /** Removes the handlers (a signal then ends the process again). */
  release(): void;
}

/** Watches SIGINT and SIGTERM until released; `onFirst` says what the command does now. */
export function watchInterrupt(onFirst: (signal: NodeJS.Signals) => void): Interrupt {
  const ac = new AbortController();
  const handler = (signal: NodeJS.Signals) => {
    if (ac.signal.aborted) process.exit(signalStatus(signal));
    ac.abort(signal);
    onFirst(signal);
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return {
    signal: ac.signal,
    release() {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    },
  };
}
