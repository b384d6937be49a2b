/**
 * What a page without a bundler maps for mpt-ts's bare dependencies (README, "In the browser"):
 * paths from the folder that holds node_modules/, as in a project with mpt-ts installed.
 */
export const BROWSER_IMPORT_MAP: Record<string, string> = {
  '@huggingface/tokenizers': 'node_modules/@huggingface/tokenizers/dist/tokenizers.mjs',
  '@huggingface/jinja': 'node_modules/@huggingface/jinja/dist/index.js',
};
