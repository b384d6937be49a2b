/**
 * UTF-8-safe streaming detokenization and stop strings that span tokens.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { StopStringMatcher } from '../src/runtime/stop-strings.js';
import { StreamDecoder } from '../src/runtime/stream-decoder.js';
import { MptTokenizer } from '../src/runtime/tokenizer.js';
import { shippedNeoxTokenizerPath } from '../src/runtime/tokenizer-files.js';

const tok = new MptTokenizer(JSON.parse(readFileSync(shippedNeoxTokenizerPath(), 'utf8')));

function streamAll(ids: number[], skipSpecialTokens = false): string[] {
  const d = new StreamDecoder(tok, { skipSpecialTokens });
  const pieces = ids.map((id) => d.push(id));
  pieces.push(d.flush());
  return pieces;
}

test('an emoji split across byte tokens is emitted whole, never as U+FFFD halves', () => {
  const text = 'emoji 😀👍🏽 and 日本語 done';
  const ids = tok.encode(text);
  // The golden encoding splits these emoji over several tokens each.
  assert.ok(ids.length > text.split(' ').length + 6);
  const pieces = streamAll(ids);
  assert.equal(pieces.join(''), text);
  for (const p of pieces) assert.ok(!p.includes('\uFFFD'), `piece ${JSON.stringify(p)} has a replacement character`);
  // The token that starts 😀 yields nothing; the one that completes it yields the whole emoji.
  const emojiIds = tok.encode('😀');
  const d = new StreamDecoder(tok);
  const out = emojiIds.map((id) => d.push(id));
  assert.deepEqual(
    out.slice(0, -1).filter((s) => s !== ''),
    [],
  );
  assert.equal(out[out.length - 1], '😀');
});

test('concatenated pieces equal decode() for every prefix of random byte-token sequences', () => {
  // Random ids over the whole vocabulary include lone continuation bytes, truncated sequences
  // and special tokens: the stream must still reproduce decode() exactly (U+FFFD included).
  let s = 7;
  const rnd = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  for (let trial = 0; trial < 300; trial++) {
    const n = 1 + Math.floor(rnd() * 12);
    const ids = Array.from({ length: n }, () =>
      rnd() < 0.5 ? Math.floor(rnd() * 256) + 50 : Math.floor(rnd() * 50277),
    );
    assert.equal(streamAll(ids).join(''), tok.decode(ids), JSON.stringify(ids));
    assert.equal(streamAll(ids, true).join(''), tok.decode(ids, { skipSpecialTokens: true }));
  }
});

test('a truncated sequence at the end of the stream becomes U+FFFD on flush, as decode makes it', () => {
  const ids = tok.encode('ok 😀');
  const cut = ids.slice(0, -1);
  const d = new StreamDecoder(tok);
  const body = cut.map((id) => d.push(id)).join('');
  assert.equal(body, 'ok ');
  assert.equal(d.flush(), '\uFFFD');
  assert.equal(tok.decode(cut), 'ok \uFFFD');
});

test('stop strings spanning several pieces are never emitted, in part or whole', () => {
  const m = new StopStringMatcher(['\nUser:', '###']);
  const pieces = ['Hello', ' there', '\n', 'Us', 'er', ':', ' more'];
  const out: string[] = [];
  let stopped = false;
  for (const p of pieces) {
    const r = m.push(p);
    out.push(r.text);
    if (r.stopped) {
      stopped = true;
      assert.equal(r.match, '\nUser:');
      break;
    }
  }
  assert.ok(stopped);
  assert.equal(out.join(''), 'Hello there');
  // Held text that did not become a stop string is released.
  const m2 = new StopStringMatcher(['\nUser:']);
  assert.equal(m2.push('a\nUs').text, 'a');
  assert.equal(m2.push('ual').text, '\nUsual');
  assert.equal(m2.push('\n').text, '');
  assert.equal(m2.flush(), '\n');
});

test('the earliest stop string wins, text before it is kept', () => {
  const m = new StopStringMatcher(['cd', 'bcde']);
  const r = m.push('abcdef');
  assert.deepEqual(r, { text: 'a', stopped: true, match: 'bcde' });
  const m2 = new StopStringMatcher(['xyz']);
  assert.deepEqual(m2.push('no stop'), { text: 'no stop', stopped: false });
  const m3 = new StopStringMatcher([]);
  assert.ok(m3.empty);
  assert.deepEqual(m3.push('xy'), { text: 'xy', stopped: false });
});
