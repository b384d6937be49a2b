// The pickle VM: values from pickles written by CPython's own pickler (protocols 2-5, bytes below
// were produced by `pickle.dumps(obj, protocol=p)` on CPython 3), hand-written malicious pickles,
// corrupt and truncated streams, limits, and a mutation fuzz that must only ever yield FormatErrors.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FormatError, UnsafePickleError } from '../src/errors.js';
import { BASIC_GLOBALS, PickleTuple, unpickle, type UnpickleOptions } from '../src/formats/pickle.js';

/**
 * CPython 3 pickles of:
 *   shared = [7]
 *   {'ints': [0, 1, -1, 255, 256, 65535, 65536, -2**31, 2**31-1, 2**31, 2**53, -2**53-1, 2**64, -2**70],
 *    'floats': [1.5, -0.0, inf, 1e-310, 3.141592653589793], 'consts': (True, False, None),
 *    'bytes': b'\x00\xff\x80', 'text': 'h\u00e9llo \u2713 \U0001F600', 'set': {3},
 *    'od': OrderedDict([('x', 1), ('y', [2])]), 'tuples': ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)),
 *    'nested': {'a': {'b': [[], {}]}}, 'shared': (shared, shared), 2: 'int key'}
 */
const CPYTHON_PICKLES: Record<number, string> = {
  2: '80027d7100285804000000696e747371015d7102284b004b014affffffff4bff4d00014dffff4a000001004a000000804affffff7f8a0500000080008a07000000000000208a07ffffffffffffdf8a090000000000000000018a090000000000000000c0655806000000666c6f61747371035d710428473ff8000000000000478000000000000000477ff000000000000047000012688b70e62b47400921fb54442d18655806000000636f6e737473710588894e877106580500000062797465737107635f636f646563730a656e636f64650a7108580500000000c3bfc280710958060000006c6174696e31710a86710b52710c580400000074657874710d580f00000068c3a96c6c6f20e29c9320f09f9880710e5803000000736574710f635f5f6275696c74696e5f5f0a7365740a71105d71114b036185711252711358020000006f64711463636f6c6c656374696f6e730a4f726465726564446963740a7115295271162858010000007871174b0158010000007971185d71194b02617558060000007475706c6573711a28294b0185711b4b014b0286711c4b014b024b0387711d284b014b024b034b0474711e74711f58060000006e657374656471207d712158010000006171227d712358010000006271245d7125285d71267d7127657373580600000073686172656471285d71294b0761682986712a4b025807000000696e74206b6579712b752e',
  3: '80037d7100285804000000696e747371015d7102284b004b014affffffff4bff4d00014dffff4a000001004a000000804affffff7f8a0500000080008a07000000000000208a07ffffffffffffdf8a090000000000000000018a090000000000000000c0655806000000666c6f61747371035d710428473ff8000000000000478000000000000000477ff000000000000047000012688b70e62b47400921fb54442d18655806000000636f6e737473710588894e877106580500000062797465737107430300ff8071085804000000746578747109580f00000068c3a96c6c6f20e29c9320f09f9880710a5803000000736574710b636275696c74696e730a7365740a710c5d710d4b036185710e52710f58020000006f64711063636f6c6c656374696f6e730a4f726465726564446963740a7111295271122858010000007871134b0158010000007971145d71154b02617558060000007475706c6573711628294b018571174b014b028671184b014b024b03877119284b014b024b034b0474711a74711b58060000006e6573746564711c7d711d580100000061711e7d711f58010000006271205d7121285d71227d7123657373580600000073686172656471245d71254b076168258671264b025807000000696e74206b65797127752e',
  4: '80049578010000000000007d94288c04696e7473945d94284b004b014affffffff4bff4d00014dffff4a000001004a000000804affffff7f8a0500000080008a07000000000000208a07ffffffffffffdf8a090000000000000000018a090000000000000000c0658c06666c6f617473945d9428473ff8000000000000478000000000000000477ff000000000000047000012688b70e62b47400921fb54442d18658c06636f6e7374739488894e87948c05627974657394430300ff80948c0474657874948c0f68c3a96c6c6f20e29c9320f09f9880948c03736574948f94284b03908c026f64948c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0178944b018c0179945d944b0261758c067475706c65739428294b0185944b014b0286944b014b024b038794284b014b024b034b04749474948c066e6573746564947d948c0161947d948c0162945d94285d947d946573738c06736861726564945d944b0761682486944b028c07696e74206b657994752e',
  5: '80059578010000000000007d94288c04696e7473945d94284b004b014affffffff4bff4d00014dffff4a000001004a000000804affffff7f8a0500000080008a07000000000000208a07ffffffffffffdf8a090000000000000000018a090000000000000000c0658c06666c6f617473945d9428473ff8000000000000478000000000000000477ff000000000000047000012688b70e62b47400921fb54442d18658c06636f6e7374739488894e87948c05627974657394430300ff80948c0474657874948c0f68c3a96c6c6f20e29c9320f09f9880948c03736574948f94284b03908c026f64948c0b636f6c6c656374696f6e73948c0b4f72646572656444696374949394295294288c0178944b018c0179945d944b0261758c067475706c65739428294b0185944b014b0286944b014b024b038794284b014b024b034b04749474948c066e6573746564947d948c0161947d948c0162945d94285d947d946573738c06736861726564945d944b0761682486944b028c07696e74206b657994752e',
};

const hex = (s: string) => Uint8Array.from(Buffer.from(s, 'hex'));
const ascii = (s: string) => Uint8Array.from(Buffer.from(s, 'latin1'));
const cat = (...parts: (Uint8Array | number[])[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
const u32le = (n: number) => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
/** BINUNICODE (X) of a string. */
const str = (s: string) => {
  const b = Buffer.from(s, 'utf8');
  return cat([0x58], u32le(b.length), b);
};
const basic: UnpickleOptions = { globals: BASIC_GLOBALS, what: 'test.pkl' };

function expectedValue(): unknown {
  const shared = [7];
  const t = (...items: unknown[]) => new PickleTuple(items);
  return new Map<unknown, unknown>([
    [
      'ints',
      [
        0,
        1,
        -1,
        255,
        256,
        65535,
        65536,
        -(2 ** 31),
        2 ** 31 - 1,
        2 ** 31,
        2n ** 53n,
        -(2n ** 53n) - 1n,
        2n ** 64n,
        -(2n ** 70n),
      ],
    ],
    ['floats', [1.5, -0, Infinity, 1e-310, Math.PI]],
    ['consts', t(true, false, null)],
    ['bytes', Uint8Array.of(0, 255, 128)],
    ['text', 'h\u00e9llo \u2713 \u{1F600}'],
    ['set', new Set([3])],
    [
      'od',
      new Map<unknown, unknown>([
        ['x', 1],
        ['y', [2]],
      ]),
    ],
    ['tuples', t(t(), t(1), t(1, 2), t(1, 2, 3), t(1, 2, 3, 4))],
    ['nested', new Map([['a', new Map([['b', [[], new Map()]]])]])],
    ['shared', t(shared, shared)],
    [2, 'int key'],
  ]);
}

function assertUnsafe(bytes: Uint8Array, global: string): void {
  assert.throws(
    () => unpickle(bytes, basic),
    (e: unknown) => {
      assert.ok(e instanceof UnsafePickleError, `expected UnsafePickleError, got ${String(e)}`);
      assert.match(
        e.message,
        new RegExp(`pickle asks for global ${global.replace(/\./g, '\\.')}, which is not allowed`),
      );
      assert.match(e.message, /^test\.pkl/);
      return true;
    },
  );
}

describe('unpickle: CPython pickles', () => {
  for (const protocol of [2, 3, 4, 5]) {
    it(`decodes protocol ${protocol} exactly`, () => {
      const value = unpickle(hex(CPYTHON_PICKLES[protocol]!), basic) as Map<unknown, unknown>;
      assert.deepEqual(value, expectedValue());
      assert.ok(Object.is((value.get('floats') as number[])[1], -0));
      const shared = (value.get('shared') as PickleTuple).items;
      assert.equal(shared[0], shared[1], 'memoized objects keep their identity');
    });
  }
});

describe('unpickle: refuses every global outside the whitelist', () => {
  it('GLOBAL os.system (protocol 2, REDUCE)', () => {
    assertUnsafe(cat([0x80, 0x02, 0x63], ascii('os\nsystem\n'), str('echo pwned'), [0x85, 0x52, 0x2e]), 'os.system');
  });
  it('STACK_GLOBAL builtins.eval (protocol 4)', () => {
    const sb = (s: string) => cat([0x8c, s.length], ascii(s));
    assertUnsafe(
      cat([0x80, 0x04], sb('builtins'), [0x94], sb('eval'), [0x94, 0x93, 0x94], sb('1+1'), [0x85, 0x52, 0x2e]),
      'builtins.eval',
    );
  });
  it('INST posix.system and OBJ-free protocol 0 subprocess.Popen', () => {
    assertUnsafe(cat([0x28], str('id'), [0x69], ascii('posix\nsystem\n'), [0x2e]), 'posix.system');
    assertUnsafe(cat(ascii('csubprocess\nPopen\n('), str('ls'), ascii('tR.')), 'subprocess.Popen');
    assertUnsafe(cat(ascii('c__builtin__\neval\n'), [0x2e]), '__builtin__.eval');
    assertUnsafe(cat(ascii('ctorch.storage\n_load_from_bytes\n'), [0x2e]), 'torch.storage._load_from_bytes');
  });
  it('extension codes (copyreg registry)', () => {
    assert.throws(() => unpickle(Uint8Array.of(0x80, 0x02, 0x82, 0x01, 0x2e), basic), UnsafePickleError);
  });
  it('refuses before calling anything: a whitelisted global after an unsafe one never runs', () => {
    // The unsafe GLOBAL comes first in the stream, so the error names it even though more follows.
    assertUnsafe(cat(ascii('cos\nsystem\nccollections\nOrderedDict\n)R.')), 'os.system');
  });
});

describe('unpickle: corrupt streams', () => {
  it('unknown opcodes are named', () => {
    for (const op of [0x00, 0xff, 0x99, 0x21]) {
      assert.throws(
        () => unpickle(Uint8Array.of(0x80, 0x02, op, 0x2e), basic),
        (e: unknown) =>
          e instanceof FormatError &&
          !(e instanceof UnsafePickleError) &&
          e.message.includes(`unknown pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte 2`),
      );
    }
  });

  it('every truncation of every CPython pickle is a FormatError', () => {
    for (const h of Object.values(CPYTHON_PICKLES)) {
      const full = hex(h);
      for (let n = 0; n < full.length; n++) {
        assert.throws(
          () => unpickle(full.subarray(0, n), basic),
          (e: unknown) => e instanceof FormatError && /truncated|underflow/.test(e.message),
          `prefix ${n}`,
        );
      }
    }
  });

  it('stack underflow, missing marks, missing memo keys, wrong targets', () => {
    const bad: [number[], RegExp][] = [
      [[0x74, 0x2e], /no MARK/], // TUPLE without MARK
      [[0x86, 0x2e], /underflow/], // TUPLE2 on an empty stack
      [[0x28, 0x4e, 0x28, 0x86, 0x2e], /underflow/], // pops below the innermost mark
      [[0x68, 0x05, 0x2e], /memo key 5/], // BINGET of nothing
      [[0x4e, 0x4e, 0x61, 0x2e], /not a list/], // APPEND to None
      [[0x4e, 0x4e, 0x4e, 0x73, 0x2e], /not a dict/], // SETITEM on None
      [[0x7d, 0x7d, 0x62, 0x2e], /BUILD/], // BUILD on a plain dict
      [[0x4e, 0x29, 0x52, 0x2e], /not a global/], // REDUCE on None
      [[0x2e], /underflow/], // STOP on nothing
      [[0x80, 0x09, 0x4e, 0x2e], /protocol 9/],
      [[0x97, 0x2e], /NEXT_BUFFER is not supported/],
      [[0x8b, 0xff, 0xff, 0xff, 0xff, 0x2e], /negative/],
      [[0x51, 0x2e], /underflow/],
      [[0x4e, 0x51, 0x2e], /persistent/],
    ];
    for (const [bytes, pattern] of bad) {
      assert.throws(
        () => unpickle(Uint8Array.from(bytes), basic),
        (e: unknown) => e instanceof FormatError && pattern.test(e.message),
        bytes.join(','),
      );
    }
    assert.throws(() => unpickle(cat(ascii('ccollections\nOrderedDict\n'), [0x4e, 0x52, 0x2e]), basic), /not a tuple/);
    assert.throws(
      () => unpickle(cat(ascii('c_codecs\nencode\n'), str('x'), str('rot13'), [0x86, 0x52, 0x2e]), basic),
      /latin1/,
    );
  });

  it('enforces stack and memo limits', () => {
    const nones = Uint8Array.from([...Array(50).fill(0x4e), 0x2e]);
    assert.equal(unpickle(nones, basic), null);
    assert.throws(() => unpickle(nones, { ...basic, maxStack: 10 }), /stack grows beyond 10/);
    const marks = Uint8Array.from([...Array(50).fill(0x28), 0x2e]);
    assert.throws(() => unpickle(marks, { ...basic, maxStack: 10 }), /stack grows beyond 10/);
    const memo = Uint8Array.from([0x4e, ...Array.from({ length: 20 }, (_, i) => [0x71, i]).flat(), 0x2e]);
    assert.throws(() => unpickle(memo, { ...basic, maxMemo: 8 }), /memo grows beyond 8/);
    // Re-putting the same key does not count twice.
    assert.equal(unpickle(Uint8Array.from([0x4e, 0x71, 1, 0x71, 1, 0x71, 1, 0x2e]), { ...basic, maxMemo: 1 }), null);
  });

  it('integers are bounded: long LONG1 / LONG4 / text integers are refused, not decoded in quadratic time', () => {
    const refuses = (bytes: Uint8Array, pattern: RegExp) =>
      assert.throws(
        () => unpickle(bytes, basic),
        (e: unknown) => e instanceof FormatError && pattern.test(e.message),
        pattern.source,
      );
    refuses(cat([0x8a, 17], new Uint8Array(17), [0x2e]), /LONG1\): integer of 17 bytes is too long/);
    // 256 KB of LONG4 took minutes to decode before this limit.
    const long4 = cat([0x80, 0x02, 0x8b], u32le(256 * 1024), new Uint8Array(256 * 1024).fill(0x7f), [0x2e]);
    refuses(long4, /test\.pkl \(byte 2, LONG4\): integer of 262144 bytes is too long \(at most 16\)/);
    refuses(cat([0x8a, 255], new Uint8Array(255).fill(0xff), [0x2e]), /integer of 255 bytes/);
    refuses(cat(ascii(`L${'9'.repeat(41)}L\n.`)), /LONG\): integer of 41 digits is too long \(at most 40\)/);
    refuses(cat(ascii(`I-${'1'.repeat(45)}\n.`)), /INT\): integer of 45 digits/);
    // The longest accepted integers decode exactly (two's complement, little-endian).
    const b16 = Uint8Array.from({ length: 16 }, (_, i) => (i * 37 + 11) & 0xff);
    b16[15] = 0x9c; // negative
    let want = 0n;
    for (let i = 15; i >= 0; i--) want = want * 256n + BigInt(b16[i]!);
    want -= 2n ** 128n;
    assert.equal(unpickle(cat([0x8a, 16], b16, [0x2e]), basic), want);
    assert.equal(unpickle(cat([0x8b], u32le(16), b16, [0x2e]), basic), want);
    assert.equal(unpickle(cat([0x8a, 0, 0x2e]), basic), 0);
    assert.equal(unpickle(cat([0x8a, 1, 0xff, 0x2e]), basic), -1);
    assert.equal(unpickle(cat(ascii(`L-${'9'.repeat(39)}L\n.`)), basic), -(10n ** 39n - 1n));
  });

  it('lengths beyond the stream are refused before anything is allocated', () => {
    for (const op of [0x58, 0x42]) {
      // BINUNICODE, BINBYTES with a 4 GB length
      assert.throws(
        () => unpickle(cat([op], [0xff, 0xff, 0xff, 0xff], [0x2e]), basic),
        /truncated: .* needs 4294967295 more bytes/,
      );
    }
    assert.throws(() => unpickle(cat([0x8d], [0, 0, 0, 0, 0, 0, 0, 0x10], [0x2e]), basic), /truncated|absurd/);
    assert.throws(
      () => unpickle(cat([0x95], [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x1f, 0], [0x2e]), basic),
      /truncated|absurd/,
    );
    // A text opcode whose line never ends within the limit is refused without scanning the rest.
    assert.throws(
      () => unpickle(cat(ascii('c'), new Uint8Array(100_000).fill(0x61), ascii('\n\n.')), basic),
      /line too long/,
    );
  });

  it('deeply nested values are built without recursion', () => {
    // 200,000 lists each inside the next: EMPTY_LIST × n, then APPEND × (n - 1).
    const n = 200_000;
    const bytes = new Uint8Array(2 * n);
    bytes.fill(0x5d, 0, n);
    bytes.fill(0x61, n, 2 * n - 1);
    bytes[2 * n - 1] = 0x2e;
    let v = unpickle(bytes, basic) as unknown[];
    let depth = 1;
    while (v.length === 1) {
      v = v[0] as unknown[];
      depth++;
    }
    assert.equal(depth, n);
  });

  it('random mutations only ever give a value or a FormatError (no crash, no hang)', () => {
    let seed = 42;
    const next = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed;
    };
    const sources = Object.values(CPYTHON_PICKLES).map(hex);
    for (let i = 0; i < 4000; i++) {
      const bytes = sources[i % sources.length]!.slice();
      const flips = 1 + (next() % 3);
      for (let f = 0; f < flips; f++) bytes[next() % bytes.length] = next() & 0xff;
      try {
        unpickle(bytes, { ...basic, persistentLoad: (pid) => pid });
      } catch (e) {
        assert.ok(e instanceof FormatError, `mutation ${i}: ${String(e)}`);
      }
    }
  });
});
