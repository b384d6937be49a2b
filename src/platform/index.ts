/**
 * The platform this code runs on. Everything outside src/platform/ imports it from here.
 *
 * In a browser (a page or a Web Worker) it is browser.ts, chosen at run time. Elsewhere it is the
 * package's `#platform` import (package.json "imports"): node.ts by default, browser.ts under a
 * bundler's "browser" condition, so a bundle never pulls in node:* modules. Why not `#platform`
 * alone, with an import map in the page: import maps do not reach Web Workers (Chromium 156 fails
 * to resolve a mapped specifier inside a module worker), and the wasm backend's worker code needs
 * the platform too. See docs/platform.md.
 */
import { platform as browser } from './browser.js';
import type { Platform } from './platform.js';

const scope = globalThis as { Window?: unknown; WorkerGlobalScope?: unknown };
const inBrowser = typeof scope.Window === 'function' || typeof scope.WorkerGlobalScope === 'function';

export const platform: Platform = inBrowser ? browser : (await import('#platform')).platform;

export type { Platform, PlatformWorker, WorkerListeners, WorkerPort } from './platform.js';
