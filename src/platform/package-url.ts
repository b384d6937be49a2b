/**
 * Where the package's own files are served from: the wasm kernels (dist/wasm/), the wasm backend's
 * worker script, the shipped tokenizer (assets/) and model (models/). Unbundled, they lie at fixed
 * places relative to the compiled modules, so the default is found from this module's URL. A
 * bundler moves the modules into its own output file and does not copy those files (nor follow a
 * worker URL that is computed), so a bundled page says where the package folder is served with
 * `setPackageUrl` (README, "In the browser").
 */

let configured: URL | undefined;

/**
 * The URL of the mpt-ts package folder (the one holding dist/, assets/ and models/) as the page
 * serves it, e.g. `'/node_modules/mpt-ts/'`; relative to the page. Undefined goes back to the
 * default (found next to the modules).
 */
export function setPackageUrl(url: string | URL | undefined): void {
  if (url === undefined) {
    configured = undefined;
    return;
  }
  const base = (globalThis as { location?: { href: string } }).location?.href;
  const resolved = base === undefined ? new URL(String(url)) : new URL(String(url), base);
  if (!resolved.pathname.endsWith('/')) resolved.pathname += '/';
  configured = resolved;
}

/** Whether setPackageUrl gave the package's place (for hints in error messages). */
export function packageUrlIsSet(): boolean {
  return configured !== undefined;
}

/**
 * Where the package file `path` (relative to the package root, e.g. 'dist/wasm/kernels.wasm') is:
 * under the URL given to setPackageUrl, else `here`, the caller's own `new URL(…, import.meta.url)`
 * of it (written out by each caller, so that tools that follow such URLs still see them).
 */
export function packageFileUrl(path: string, here: URL): URL {
  return configured === undefined ? here : new URL(path, configured);
}
