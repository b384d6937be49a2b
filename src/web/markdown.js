// A small markdown renderer for the chat page's replies: the subset models actually write (code
// fences, inline code, bold, italic, headings, lists, paragraphs, http(s) links), no libraries.
// Safety comes from the order: every piece of the reply is HTML-escaped before any tag is made,
// and the only tags made are the fixed ones below, so a reply can never create an element or an
// attribute of its own. It is rendered again on every streamed update, so it must also accept a
// cut-off reply (an unclosed fence, a half-written **bold**) and stay cheap: one pass over the lines.

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Text → HTML text (also safe inside a double- or single-quoted attribute). */
export function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

// Placeholders for finished pieces of HTML inside a line while the rest is still being marked up;
// NUL never survives into the text (it is removed up front), so a reply cannot forge one.
const MARK = '\u0000';
const MARKED = new RegExp(`${MARK}(\\d+)${MARK}`, 'g');

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const BULLET = /^ {0,3}[-*+]\s+(.*)$/;
const NUMBERED = /^ {0,3}(\d{1,9})[.)]\s+(.*)$/;
const BLANK = /^\s*$/;
const RULE = /^ {0,3}([-*_])(\s*\1){2,}\s*$/;

/** One line's inline markup: `code`, **bold**, *italic*, [text](http(s) url). */
function inline(text) {
  const stash = [];
  const keep = (html) => `${MARK}${stash.push(html) - 1}${MARK}`;
  // Code spans first: nothing inside them is markup.
  let out = text.replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_, _ticks, code) =>
    keep(`<code>${escapeHtml(code)}</code>`),
  );
  out = escapeHtml(out);
  // Links only for http(s): anything else (javascript:, data:, relative) stays the literal text.
  // The URL is already escaped, so it cannot leave its quoted attribute.
  out = out.replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s()]+)\)/gi, (_, label, url) =>
    keep(`<a href="${url}" target="_blank" rel="noopener noreferrer">${emphasis(label, keep)}</a>`),
  );
  out = emphasis(out, keep);
  // Stashed pieces can hold other stashed pieces (a code span inside a link's label).
  while (out.includes(MARK)) out = out.replace(MARKED, (_, i) => stash[Number(i)]);
  return out;
}

/**
 * ***both***, **bold** / __bold__, then *italic* / _italic_ on escaped text. A finished strong
 * span is stashed whole, so an italic span can only contain it, never half of it: no misnesting.
 */
function emphasis(html, keep) {
  const italic = (t) =>
    t
      .replace(/\*(?=[^\s*])([^*]*?[^\s*])\*/g, '<em>$1</em>')
      .replace(/(^|[^\w])_(?=[^\s_])([^_]*?[^\s_])_(?!\w)/g, '$1<em>$2</em>');
  const strong = (inner) => keep(`<strong>${italic(inner)}</strong>`);
  return italic(
    html
      .replace(/\*\*\*(?=\S)([\s\S]*?\S)\*\*\*/g, (_, inner) => keep(`<em><strong>${italic(inner)}</strong></em>`))
      .replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, (_, inner) => strong(inner))
      .replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, (_, before, inner) => before + strong(inner)),
  );
}

/** Markdown text → HTML string. */
export function renderMarkdown(source) {
  const lines = String(source).replaceAll(MARK, '').replace(/\r\n?/g, '\n').split('\n');
  const out = [];
  let para = [];
  let list = null; // { tag: 'ul' | 'ol', start, items: string[][] }

  const flushPara = () => {
    if (para.length) out.push(`<p>${para.map(inline).join('<br>')}</p>`);
    para = [];
  };
  const flushList = () => {
    if (!list) return;
    const start = list.tag === 'ol' && list.start !== 1 ? ` start="${list.start}"` : '';
    const items = list.items.map((item) => `<li>${item.map(inline).join('<br>')}</li>`).join('');
    out.push(`<${list.tag}${start}>${items}</${list.tag}>`);
    list = null;
  };
  const flush = () => {
    flushPara();
    flushList();
  };
  const addItem = (tag, start, text) => {
    if (list && list.tag !== tag) flushList();
    flushPara();
    list ??= { tag, start, items: [] };
    list.items.push([text]);
  };

  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const opened = FENCE.exec(line);
    if (opened) {
      flush();
      const [, fence, lang] = opened;
      const body = [];
      // Up to the closing fence, or to the end: while a reply streams its fence is still open.
      for (i++; i < lines.length; i++) {
        const close = lines[i].trim();
        if (close.length >= fence.length && close === fence[0].repeat(close.length)) break;
        body.push(lines[i]);
      }
      // Still open (streaming): the newline just typed is not yet a line of code.
      if (i >= lines.length && body.at(-1) === '') body.pop();
      const cls = lang ? ` class="language-${escapeHtml(lang)}"` : '';
      out.push(`<pre><code${cls}>${escapeHtml(body.join('\n'))}</code></pre>`);
      continue;
    }
    if (BLANK.test(line)) {
      flush();
      continue;
    }
    const heading = HEADING.exec(line);
    if (heading) {
      flush();
      const n = heading[1].length;
      out.push(`<h${n}>${inline(heading[2])}</h${n}>`);
      continue;
    }
    if (RULE.test(line)) {
      flush();
      out.push('<hr>');
      continue;
    }
    const bullet = BULLET.exec(line);
    if (bullet) {
      addItem('ul', 1, bullet[1]);
      continue;
    }
    const numbered = NUMBERED.exec(line);
    if (numbered) {
      addItem('ol', Number(numbered[1]), numbered[2]);
      continue;
    }
    // An indented line right after a list item continues that item.
    if (list && /^\s/.test(line)) {
      list.items[list.items.length - 1].push(line.trim());
      continue;
    }
    flushList();
    para.push(line);
  }
  flush();
  return out.join('\n');
}
