/**
 * Lists and records in request bodies checked by a plain loop: zod's own array schema spends a
 * microsecond or more of the event loop per element (a record several, per entry), and makes an issue for every element that fails (a list of
 * 250,000 token ids held the server 25-75 ms busy; tried against a union's list of strings, which
 * fails on every one of them, 1.8 s).
 *
 * `fastList` accepts what `z.array(element)` with the same bounds accepts, returning the list
 * itself (not copied, unless element changed one of its elements). A list that is too long is refused for its length before its
 * elements are looked at; otherwise a refused list's issues are those of its first bad element
 * (zod's first issue), its path prefixed with the element's index.
 */
import * as z from 'zod';

type Bounds = { min?: number; max?: number };

/** zod's issues for `v` as a list of anything: not a list, or of a length out of bounds. */
function shapeIssues(v: unknown, bounds: Bounds): z.core.$ZodIssue[] {
  let shape = z.array(z.unknown());
  if (bounds.min !== undefined) shape = shape.min(bounds.min);
  if (bounds.max !== undefined) shape = shape.max(bounds.max);
  return shape.safeParse(v).error?.issues ?? [];
}

/**
 * z.array(element).min(min).max(max), checked in one loop: `accepts` is a quick test that
 * element accepts a value (when it says no, element itself decides).
 */
export function fastList<T>(element: z.ZodType<T>, accepts: (v: unknown) => boolean, bounds: Bounds = {}) {
  const { min = 0, max = Infinity } = bounds;
  return z.custom<unknown>().transform((v, ctx): T[] => {
    const refuse = (issues: readonly z.core.$ZodIssue[], at: PropertyKey[]) => {
      // Not continuable, as zod's own type and length issues are not (a union tells them apart).
      for (const issue of issues)
        ctx.addIssue({ ...issue, path: [...at, ...issue.path], continue: false } as z.core.$ZodRawIssue);
      return z.NEVER;
    };
    if (!Array.isArray(v)) return refuse(shapeIssues(v, bounds), []);
    // The issue zod gives any list one longer than `max` (it names only the limit).
    if (v.length > max) return refuse(shapeIssues(new Array(max + 1).fill(0), bounds), []);
    // A copy only where element made something else of an element (an object's unknown keys dropped).
    let out: unknown[] | null = null;
    for (let i = 0; i < v.length; i++) {
      const item: unknown = v[i];
      if (accepts(item)) continue;
      const r = element.safeParse(item);
      if (!r.success) return refuse(r.error.issues, [i]);
      if (r.data === item) continue;
      out ??= v.slice();
      out[i] = r.data;
    }
    if (v.length < min) return refuse(shapeIssues([], bounds), []);
    return (out ?? v) as T[];
  });
}

/** A token id: a non-negative integer (zod's int is a safe integer). */
export const TokenId = z.number().int().min(0);
const isTokenId = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** A list of token ids, of at least `min`. */
export const tokenIds = (min = 0) => fastList(TokenId, isTokenId, { min });

/** A list of strings with these bounds. */
export const strings = (bounds: Bounds = {}) => fastList(z.string(), (v) => typeof v === 'string', bounds);

/** A list of lists of token ids, each of at least `idsMin`, with these bounds. */
export const idLists = (idsMin: number, bounds: Bounds = {}) =>
  fastList(tokenIds(idsMin), (v) => Array.isArray(v) && v.length >= idsMin && v.every(isTokenId), bounds);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/**
 * `record` (a z.record), checked in one loop over the entries when `accepts` passes every value,
 * and refused at once for more than `most` entries (with `tooMany` as its message: 100,000
 * logit_bias entries cost zod half a second or more before its limit was looked at). When a value
 * fails `accepts`, the first such entry alone is checked by `record`; the record is returned as
 * it came when every value passes.
 */
export function fastRecord<T>(
  record: z.ZodType<T>,
  accepts: (value: unknown) => boolean,
  limit?: { most: number; tooMany: string },
) {
  return z.custom<unknown>().transform((v, ctx): T => {
    if (!isPlainObject(v)) return parsedOrRefused(record.safeParse(v), ctx);
    if (limit && entriesOver(v, limit.most)) {
      ctx.addIssue({ code: 'custom', message: limit.tooMany, path: [], continue: false });
      return z.NEVER;
    }
    for (const k in v) {
      if (!Object.hasOwn(v, k)) continue;
      if (accepts(v[k])) continue;
      // The first entry that may be refused, alone: zod's first issue is about it, if any is.
      const one = record.safeParse({ [k]: v[k] });
      if (!one.success) return parsedOrRefused(one, ctx);
    }
    return limit ? parsedOrRefused(record.safeParse(v), ctx) : (v as T);
  });
}

/** Whether `v` has more than `most` own enumerable keys, counting no further than that. */
function entriesOver(v: object, most: number): boolean {
  let n = 0;
  for (const k in v) if (Object.hasOwn(v, k) && ++n > most) return true;
  return false;
}

function parsedOrRefused<T>(r: z.ZodSafeParseResult<T>, ctx: z.core.$RefinementCtx<unknown>): T {
  if (r.success) return r.data;
  for (const issue of r.error.issues) ctx.addIssue({ ...issue, continue: false } as z.core.$ZodRawIssue);
  return z.NEVER;
}
