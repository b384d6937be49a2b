/**
 * The `listening on URL` line that `mpt serve` and `mpt web` write to stdout for the tests and
 * scripts that start them and read it to learn the port. In a terminal (stdout and stderr both
 * one) the user already reads the address in the command's own stderr lines, so it is left out
 * there rather than shown twice.
 */
export function writeAddressLine(url: string): void {
  if (process.stdout.isTTY && process.stderr.isTTY) return;
  process.stdout.write(`listening on ${url}\n`);
}
