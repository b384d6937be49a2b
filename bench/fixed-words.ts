/** Words from a fixed sequence: the same text every run (request bodies of the server benchmarks). */
export function words(chars: number, seed: number): string {
  const vocab = ['the', 'model', 'answers', 'quickly', 'when', 'asked', 'about', 'naïve', 'café', 'data', '42', 'x'];
  let s = '';
  let x = seed;
  while (s.length < chars) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    s += `${vocab[(x >>> 16) % vocab.length]} `;
  }
  return s.slice(0, chars);
}
