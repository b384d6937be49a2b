/**
 * The chat page's markdown renderer (src/web/markdown.js, plain browser JavaScript imported here
 * from the source tree): each construct it supports, and that nothing in a reply can make an
 * element or attribute of its own (raw HTML, javascript: links, quotes breaking out of href).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';

interface MarkdownModule {
  renderMarkdown(text: string): string;
  escapeHtml(text: string): string;
}
const { renderMarkdown: md } = (await import(
  new URL('../../src/web/markdown.js', import.meta.url).href
)) as MarkdownModule;

/** Every tag in `html` with its attribute names: the renderer may only make these. */
const ALLOWED: Record<string, string[]> = {
  p: [],
  br: [],
  strong: [],
  em: [],
  code: ['class'],
  pre: [],
  ul: [],
  ol: ['start'],
  li: [],
  hr: [],
  h1: [],
  h2: [],
  h3: [],
  h4: [],
  h5: [],
  h6: [],
  a: ['href', 'target', 'rel'],
};
function assertOnlyOwnTags(html: string): void {
  for (const m of html.matchAll(/<\/?([^\s>/]+)([^>]*)>/g)) {
    const [tag, attrs] = [m[1]!, m[2]!];
    assert.ok(tag in ALLOWED, `unexpected tag <${tag}> in ${html}`);
    const names = [...attrs.matchAll(/([^\s=]+)="[^"]*"/g)].map((a) => a[1]!);
    // Nothing but name="value" pairs: a stray quote or word would be an attribute of the reply's.
    assert.equal(attrs.replace(/\s*[^\s=]+="[^"]*"/g, ''), '', `stray attribute text in <${tag}${attrs}>`);
    for (const n of names) assert.ok(ALLOWED[tag]!.includes(n), `unexpected attribute ${n} on <${tag}>`);
  }
}

test('markdown: paragraphs and line breaks', () => {
  assert.equal(md('one\ntwo\n\nthree'), '<p>one<br>two</p>\n<p>three</p>');
  assert.equal(md(''), '');
  assert.equal(md('a\r\nb'), '<p>a<br>b</p>');
});

test('markdown: bold, italic, inline code', () => {
  assert.equal(md('**b** and __b2__'), '<p><strong>b</strong> and <strong>b2</strong></p>');
  assert.equal(md('*i* and _i2_'), '<p><em>i</em> and <em>i2</em></p>');
  assert.equal(md('***both***'), '<p><em><strong>both</strong></em></p>');
  // Not emphasis: arithmetic, snake_case, a lone star.
  assert.equal(md('2 * 3 * 4, snake_case_name, a*'), '<p>2 * 3 * 4, snake_case_name, a*</p>');
  // Nothing inside a code span is markup, and it is escaped.
  assert.equal(md('use `**x** <b>` here'), '<p>use <code>**x** &lt;b&gt;</code> here</p>');
  assert.equal(md('``a ` b``'), '<p><code>a ` b</code></p>');
});

test('markdown: headings', () => {
  assert.equal(md('# One'), '<h1>One</h1>');
  assert.equal(md('### Three *it* ###'), '<h3>Three <em>it</em></h3>');
  assert.equal(md('## C#'), '<h2>C#</h2>');
  assert.equal(md('####### seven'), '<p>####### seven</p>');
  assert.equal(md('#nospace'), '<p>#nospace</p>');
});

test('markdown: bullet and numbered lists', () => {
  assert.equal(md('- a\n* b\n+ **c**'), '<ul><li>a</li><li>b</li><li><strong>c</strong></li></ul>');
  assert.equal(md('1. x\n2. y'), '<ol><li>x</li><li>y</li></ol>');
  assert.equal(md('3) x\n4) y'), '<ol start="3"><li>x</li><li>y</li></ol>');
  // An indented line continues its item; a list and a paragraph around it stay apart.
  assert.equal(
    md('intro\n- a\n  more\n- b\nafter'),
    '<p>intro</p>\n<ul><li>a<br>more</li><li>b</li></ul>\n<p>after</p>',
  );
  assert.equal(md('- a\n1. b'), '<ul><li>a</li></ul>\n<ol><li>b</li></ol>');
});

test('markdown: code fences keep their text exactly, escaped', () => {
  const code = 'if (a < b && c > "d") {\n  return \'<script>\';\n}\n\n**not bold** # not a heading';
  assert.equal(
    md(`Look:\n\`\`\`js\n${code}\n\`\`\`\nDone.`),
    '<p>Look:</p>\n<pre><code class="language-js">if (a &lt; b &amp;&amp; c &gt; &quot;d&quot;) {\n' +
      '  return &#39;&lt;script&gt;&#39;;\n}\n\n**not bold** # not a heading</code></pre>\n<p>Done.</p>',
  );
  assert.equal(md('~~~\nplain\n~~~'), '<pre><code>plain</code></pre>');
  // A longer fence is closed only by one at least as long.
  assert.equal(md('````\n```\ninner\n```\n````'), '<pre><code>```\ninner\n```</code></pre>');
  // A language name cannot carry markup into the class attribute.
  const odd = md('```a"onclick="x\ncode\n```');
  assertOnlyOwnTags(odd);
  assert.doesNotMatch(odd, /"onclick/);
});

test('markdown: an unclosed fence while streaming renders what has come as code', () => {
  assert.equal(
    md('Here:\n```python\nprint(1)'),
    '<p>Here:</p>\n<pre><code class="language-python">print(1)</code></pre>',
  );
  // The newline just streamed does not add an empty code line; the fence alone is an empty block.
  assert.equal(md('```python\nprint(1)\n'), '<pre><code class="language-python">print(1)</code></pre>');
  assert.equal(md('```'), '<pre><code></code></pre>');
  // Half-written inline markup stays text until it is closed.
  assert.equal(md('so **bo'), '<p>so **bo</p>');
  assert.equal(md('see [the docs](https://exa'), '<p>see [the docs](https://exa</p>');
});

test('markdown: links only for http(s), opened safely', () => {
  assert.equal(
    md('[docs](https://example.org/a?x=1&y=2) and [plain](http://e.com)'),
    '<p><a href="https://example.org/a?x=1&amp;y=2" target="_blank" rel="noopener noreferrer">docs</a> and ' +
      '<a href="http://e.com" target="_blank" rel="noopener noreferrer">plain</a></p>',
  );
  assert.equal(
    md('[**b** `c`](https://e.com)'),
    '<p><a href="https://e.com" target="_blank" rel="noopener noreferrer"><strong>b</strong> <code>c</code></a></p>',
  );
  for (const bad of ['javascript:alert(1)', 'JaVaScRiPt:alert(1)', 'data:text/html,x', '/relative', 'vbscript:x']) {
    const html = md(`[click](${bad})`);
    assert.doesNotMatch(html, /<a/, bad);
    assert.equal(html, `<p>[click](${bad})</p>`);
  }
  // A quote in the URL cannot end the href and start an attribute.
  const html = md('[x](https://e.com/"onmouseover="alert(1))');
  assertOnlyOwnTags(html);
  assert.doesNotMatch(html, /onmouseover="/);
});

test('markdown: HTML in a reply is text, never an element', () => {
  const nasty = [
    '<img src=x onerror=alert(1)>',
    '<script>alert(1)</script>',
    '**<script>alert(1)</script>**',
    '- <img src=x onerror=alert(1)>',
    '# <svg onload=alert(1)>',
    '[<img src=x onerror=alert(1)>](https://e.com)',
    '`</code><script>x</script>`',
    '<a href="javascript:alert(1)">x</a>',
    'x\u0000 0\u0000 y',
    '"><iframe src=javascript:alert(1)>',
  ];
  for (const text of nasty) {
    const html = md(text);
    assertOnlyOwnTags(html);
    assert.doesNotMatch(html, /<(img|script|svg|iframe)/i, text);
    assert.doesNotMatch(html, /javascript:[^<]*"/i, text);
  }
  assert.equal(md('<img src=x onerror=alert(1)>'), '<p>&lt;img src=x onerror=alert(1)&gt;</p>');
  assert.equal(md('<script>alert(1)</script>'), '<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>');
});

test('markdown: horizontal rule; a long reply renders in one pass', () => {
  assert.equal(md('a\n\n---\n\nb'), '<p>a</p>\n<hr>\n<p>b</p>');
  // Re-rendered on every streamed token: many unclosed markers must not blow up.
  const big = '*a **b `c [d]( '.repeat(2000);
  const html = md(big);
  assertOnlyOwnTags(html);
  assert.ok(html.startsWith('<p>'));
});

test('markdown: overlapping emphasis still nests properly', () => {
  for (const text of ['***both***', '**a *b** c*', '*a **b* c**', '**a _b** c_', '__a *b__ c*', '***x** y*']) {
    const html = md(text);
    const open: string[] = [];
    for (const m of html.matchAll(/<(\/?)(strong|em)>/g)) {
      if (!m[1]) open.push(m[2]!);
      else assert.equal(open.pop(), m[2], `misnested tags for ${text}: ${html}`);
    }
    assert.deepEqual(open, [], `unclosed tag for ${text}: ${html}`);
  }
  assert.equal(md('**a *b* c**'), '<p><strong>a <em>b</em> c</strong></p>');
  assert.equal(md('*a **b** c*'), '<p><em>a <strong>b</strong> c</em></p>');
});
