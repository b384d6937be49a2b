/** `mpt web [MODEL]`: serves the chat app whose page runs the model itself (in the browser tab). */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { InputError } from '../../errors.js';
import { DEFAULT_HOST, DEFAULT_PORT } from '../../server/listen-address.js';
import { StaticSite } from '../../server/static-files.js';
import { webAppSite } from '../../server/web-app.js';
import { writeAddressLine } from '../address-line.js';
import { parseArgs } from '../args.js';

export const summary = 'serve the chat app that runs the model in the browser tab (static files only)';
export const help = `usage: mpt web [MODEL] [--port N] [--host HOST]

Serves a chat app whose page runs MODEL itself, on WebAssembly in Web Workers: this command only
serves files (with the Cross-Origin-Opener-Policy / Cross-Origin-Embedder-Policy headers that let
the page's workers share memory) and runs no model. Open the URL it prints.

MODEL is the shipped model by default, a Hugging Face MPT folder or a .gguf file (served under
/model/), or an http(s) URL that the page loads directly (the server there must allow CORS and
Range requests, as huggingface.co does). In the page, a URL typed in or files dropped on it load
another model. The page's URL may add ?backend=webgpu (or wasm; default: WebGPU on a hardware GPU,
else wasm), ?threads=N and ?model=URL. /bench.html measures prompt and decode speed (tok/s) of the
model in the tab.

options:
  --host HOST   address to bind (default ${DEFAULT_HOST}). Browsers isolate (and so give worker threads
                and offline use to) only pages from localhost or https: from another machine, the
                page runs on one thread
  --port N      port (default ${DEFAULT_PORT}; 0 picks a free one)`;

export async function run(argv: string[]): Promise<number> {
  const { positionals, options } = parseArgs(argv, { host: { type: 'string' }, port: { type: 'number' } }, 'web');
  if (positionals.length > 1) throw new InputError(`web takes one MODEL, got ${positionals.length}`);
  const port = options['port'] ?? DEFAULT_PORT;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new InputError(`--port must be an integer in 0..65535, got ${String(port)}`);
  const host = (options['host'] as string | undefined) ?? DEFAULT_HOST;
  const site = webAppSite(positionals[0]);
  const files = new StaticSite(site.roots, site.generated);
  const server = createServer((req, res) => void files.handle(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE') reject(new InputError(`port ${port} is in use: pick another with --port`));
      else if (e.code === 'EADDRNOTAVAIL' || e.code === 'ENOTFOUND')
        reject(new InputError(`cannot listen on ${host}: ${e.message}`));
      else reject(e);
    });
    server.listen(port, host, () => resolve());
  });
  const { port: bound } = server.address() as AddressInfo;
  const shown = host === '0.0.0.0' || host === '::' ? 'localhost' : host.includes(':') ? `[${host}]` : host;
  const url = `http://${shown}:${bound}/`;
  process.stderr.write(
    `mpt web: model ${site.config.name} (${site.config.model}); chat at ${url}, bench at ${url}bench.html\n`,
  );
  writeAddressLine(url);

  return await new Promise<number>((resolve) => {
    const stop = () => {
      process.stderr.write('mpt web: stopped\n');
      server.closeAllConnections();
      server.close(() => resolve(0));
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
