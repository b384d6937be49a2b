/**
 * Numbers the turns of the event loop (a `setImmediate` ticker): tests of what the server does in
 * one turn count turns and work, not time.
 */
export function turnCounter(): { now(): number; stop(): void } {
  let turn = 0;
  let ticking = true;
  const tick = () => {
    turn++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    now: () => turn,
    stop: () => {
      ticking = false;
    },
  };
}
