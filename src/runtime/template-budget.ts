/**
 * Renders a parsed Jinja chat template within fixed bounds on work, memory and recursion.
 *
 * A model's chat_template is hostile input, and @huggingface/jinja's `Template.render` has no
 * bounds: `range(1000000000)` dies of a fatal (uncatchable) out-of-memory, nested loops run for
 * hours, `{% set ns.x = ns.x + ns.x %}` in a loop grows without limit. Here the same interpreter
 * runs with the same globals as `Template.render`, except that `range` refuses long results before
 * building them, every evaluated node is charged against a work budget, and filters that repeat a
 * string by a computed width are refused before rendering starts.
 */
import { Environment, Interpreter } from '@huggingface/jinja';
import { InputError } from '../errors.js';

// The package's declarations import './runtime' and './ast' without extensions, which NodeNext
// resolution cannot follow, so the parts used here are typed by hand.
/** A parsed template node (`new Template(src).parsed` is the root, a 'Program'). */
export interface TemplateNode {
  type: string;
}
interface RuntimeValue {
  type: string;
  value: unknown;
}
interface JinjaEnvironment {
  set(name: string, value: unknown): unknown;
}
type Node = TemplateNode;
type Program = TemplateNode;
const InterpreterBase = Interpreter as new (
  env: JinjaEnvironment,
) => {
  run(program: Program): RuntimeValue;
  evaluate(statement: Node, environment: JinjaEnvironment): RuntimeValue;
};

/** The longest list `range` may build (a chat template ranges over messages, not millions). */
export const TEMPLATE_RANGE_LIMIT = 100_000;

/**
 * Work units one render may spend: each evaluated node costs 1 plus the size of its result (list
 * length, object size, string length / 1024), so loops, doublings and filters over big values all
 * pay for what they touch. The interpreter takes about 3 µs a unit in a loop, while a string's
 * characters are handled at about a nanosecond each, so a unit is one step or a kilobyte of text.
 * Measured (MPT-7B-Chat's template / ChatML / a Llama-2-style template): about 5,000 / 2,100 /
 * 7,200 units for 100 messages, and 11,200 / 8,200 / 15,400 for 100 messages and a 1 MB document
 * message (the document is looked up, joined and emitted about eight times). 150,000 leaves ten
 * times the largest; a hostile loop reaches it in about half a second.
 */
export const TEMPLATE_WORK_BUDGET = 150_000;

/**
 * The longest string a render may hold (4 Mi characters, about a million tokens: many times any
 * MPT context). Bounds memory where the budget does not: iterating a string builds one value per
 * character in one step.
 */
export const TEMPLATE_MAX_STRING = 4 * 1024 * 1024;

/** The widest `indent(width)` / `tojson(indent=N)` accepted (the filters repeat " " that often per line). */
export const TEMPLATE_MAX_INDENT = 64;

/** A value's size for the budget. */
function valueCost(value: RuntimeValue): number {
  switch (value.type) {
    case 'ArrayValue':
      return (value.value as unknown[]).length;
    case 'StringValue':
      return (value.value as string).length / 1024;
    case 'ObjectValue':
      return (value.value as Map<string, unknown>).size;
    default:
      return 0;
  }
}

/** The Interpreter, charging every evaluation against a budget. */
class BudgetedInterpreter extends InterpreterBase {
  private spent = 0;
  override evaluate(statement: Node, environment: JinjaEnvironment): RuntimeValue {
    const result = super.evaluate(statement, environment);
    this.spent += 1 + valueCost(result);
    if (this.spent > TEMPLATE_WORK_BUDGET) {
      throw new InputError(
        `the chat_template does too much work (over ${TEMPLATE_WORK_BUDGET} units, each a step, a list item or a kilobyte of text it handles): refused`,
      );
    }
    if (result.type === 'StringValue' && (result.value as string).length > TEMPLATE_MAX_STRING) {
      throw new InputError(
        `the chat_template builds a string of ${(result.value as string).length} characters (at most ${TEMPLATE_MAX_STRING}): refused`,
      );
    }
    return result;
  }
}

/** `range` as the library defines it, but refusing a result longer than TEMPLATE_RANGE_LIMIT before building it. */
function boundedRange(start: number, stop?: number, step = 1): number[] {
  let from = start;
  let to = stop;
  if (to === undefined) {
    to = from;
    from = 0;
  }
  if (step === 0) throw new InputError('range() step must not be zero');
  const count = step > 0 ? Math.ceil((to - from) / step) : Math.ceil((from - to) / -step);
  if (count > TEMPLATE_RANGE_LIMIT) {
    throw new InputError(
      `the chat_template calls range() for ${count} numbers (at most ${TEMPLATE_RANGE_LIMIT}): refused`,
    );
  }
  const out: number[] = [];
  if (step > 0) for (let i = from; i < to; i += step) out.push(i);
  else for (let i = from; i > to; i += step) out.push(i);
  return out;
}

/** `strftime` as the library implements it: %Y %m %d %b %B %H %M %%, local time, anything else kept. */
function strftime(date: Date, format: string): string {
  const pad2 = (n: number) => (n < 10 ? `0${n}` : `${n}`);
  return format.replace(/%[YmdbBHM%]/g, (token) => {
    switch (token) {
      case '%Y':
        return `${date.getFullYear()}`;
      case '%m':
        return pad2(date.getMonth() + 1);
      case '%d':
        return pad2(date.getDate());
      case '%b':
        return new Intl.DateTimeFormat(undefined, { month: 'short' }).format(date);
      case '%B':
        return new Intl.DateTimeFormat(undefined, { month: 'long' }).format(date);
      case '%H':
        return pad2(date.getHours());
      case '%M':
        return pad2(date.getMinutes());
      default:
        return '%';
    }
  });
}

/** Whether an argument node is absent or a small non-negative integer literal. */
function isSmallWidth(arg: Node | undefined): boolean {
  if (arg === undefined) return true;
  const lit = arg as unknown as { type: string; value: unknown };
  return (
    lit.type === 'IntegerLiteral' && typeof lit.value === 'number' && lit.value >= 0 && lit.value <= TEMPLATE_MAX_INDENT
  );
}

interface FilterCall {
  type: 'CallExpression';
  callee: { type: string; value?: unknown };
  args: { type: string; key?: { value: string }; value?: Node }[];
}

/** A keyword argument's value node, if the call passes it. */
function keywordArg(call: FilterCall, key: string): Node | undefined {
  const kw = call.args.find((a) => a.type === 'KeywordArgumentExpression' && a.key?.value === key);
  return kw?.value;
}

/**
 * Refuses, before rendering, the filter calls that repeat a string by a width computed at render
 * time (`indent(n)`, `tojson(indent=n)`): the library builds `" ".repeat(n)` in one step, which no
 * per-step budget can interrupt. Walks the tree with an explicit stack, so a deeply nested
 * template cannot overflow it.
 */
export function checkTemplateFilters(program: Program): void {
  const stack: unknown[] = [program];
  while (stack.length > 0) {
    const node = stack.pop();
    if (Array.isArray(node)) {
      for (const child of node) stack.push(child);
      continue;
    }
    if (typeof node !== 'object' || node === null) continue;
    const n = node as { type?: unknown; filter?: FilterCall };
    if ((n.type === 'FilterExpression' || n.type === 'FilterStatement') && n.filter?.type === 'CallExpression') {
      const call = n.filter;
      const name = call.callee.type === 'Identifier' ? call.callee.value : undefined;
      const positional = call.args.filter(
        (a) => a.type !== 'KeywordArgumentExpression' && a.type !== 'KeywordSpreadExpression',
      );
      if (name === 'indent' && !isSmallWidth((positional[0] as Node | undefined) ?? keywordArg(call, 'width'))) {
        throw new InputError(
          `the chat_template's indent filter needs a width written as an integer from 0 to ${TEMPLATE_MAX_INDENT}: refused`,
        );
      }
      if (name === 'tojson' && !isSmallWidth(keywordArg(call, 'indent'))) {
        throw new InputError(
          `the chat_template's tojson filter needs an indent written as an integer from 0 to ${TEMPLATE_MAX_INDENT}: refused`,
        );
      }
    }
    for (const child of Object.values(node)) {
      if (typeof child === 'object' && child !== null) stack.push(child);
    }
  }
}

/**
 * Renders a parsed template (`new Template(src).parsed`, checked with checkTemplateFilters) with
 * `items` as variables, as `Template.render` does but within the bounds above. Every failure,
 * including a stack overflow from deep recursion, is an InputError.
 */
export function renderBounded(program: Program, items: Record<string, unknown>): string {
  const env: JinjaEnvironment = new Environment();
  env.set('false', false);
  env.set('true', true);
  env.set('none', null);
  env.set('raise_exception', (message: unknown) => {
    throw new Error(String(message));
  });
  env.set('range', boundedRange);
  env.set('strftime_now', (format: string) => strftime(new Date(), format));
  env.set('True', true);
  env.set('False', false);
  env.set('None', null);
  for (const [key, value] of Object.entries(items)) env.set(key, value);
  try {
    return new BudgetedInterpreter(env).run(program).value as string;
  } catch (e) {
    if (e instanceof InputError) throw e;
    if (e instanceof RangeError) {
      throw new InputError(`the chat_template nests or recurses too deeply, or builds too long a string: ${e.message}`);
    }
    throw new InputError(`the chat_template failed to render: ${(e as Error).message}`);
  }
}
