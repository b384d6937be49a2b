// The chat app's service worker (registered under `mpt web`): keeps the app's files — the page,
// the engine's modules and wasm, the tokenizer modules — so that the app opens without the network.
// Network first (a rebuilt app is seen at once), the kept copy when the network fails. Range
// requests (the model's weights) and weight files pass through untouched: the engine caches models.

const CACHE = 'mpt-web-app-v1';

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      const files = await (await fetch('/app-files.json', { cache: 'no-cache' })).json();
      await cache.addAll(files);
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) if (name !== CACHE) await caches.delete(name);
      await self.clients.claim();
    })(),
  );
});

function kept(request) {
  if (request.method !== 'GET' || request.headers.has('range')) return false;
  const url = new URL(request.url);
  return url.origin === self.location.origin && !/\.(gguf|safetensors|bin)$/i.test(url.pathname);
}

self.addEventListener('fetch', (event) => {
  const { request } = event;
  if (!kept(request)) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      try {
        const response = await fetch(request);
        if (response.ok) await cache.put(request, response.clone());
        return response;
      } catch (e) {
        const copy = await cache.match(request, { ignoreSearch: new URL(request.url).pathname === '/' });
        if (copy) return copy;
        throw e;
      }
    })(),
  );
});
