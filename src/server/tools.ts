/**
 * `tools` / `tool_choice` in chat completions. A call is a JSON value the model writes under the
 * JSON-schema constraint: `{"name": <one of the tools' names>, "arguments": <that tool's
 * parameters>}`, an `anyOf` with one branch per allowed tool. `tool_choice`: "none" → plain
 * text; "required" and "auto" (the default when tools are given) → a call to any of the tools
 * (a JSON grammar cannot also allow free text, so "auto" always calls); `{type: "function",
 * function: {name}}` → a call to that tool.
 */
import { boundedText } from '../errors.js';
import { randomBytes } from 'node:crypto';
import * as z from 'zod';
import { badRequest } from './api-error.js';

const Name = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 letters, digits, underscores or dashes');

export const Tool = z.strictObject({
  type: z.literal('function'),
  function: z.strictObject({
    name: Name,
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().nullish(),
  }),
});

export const ToolChoice = z.union([
  z.enum(['none', 'auto', 'required']),
  z.strictObject({ type: z.literal('function'), function: z.strictObject({ name: z.string() }) }),
]);

/** An assistant message's past call, as clients send it back. */
export const ToolCall = z.object({
  id: z.string(),
  type: z.literal('function'),
  function: z.object({ name: z.string(), arguments: z.string() }),
});

type Tools = z.infer<typeof Tool>[];
type Choice = z.infer<typeof ToolChoice>;

/** The JSON schema of a call the request allows, or null when the reply is plain text. */
export function toolCallSchema(tools: Tools | null | undefined, choice: Choice | null | undefined): object | null {
  if (!tools || tools.length === 0) {
    if (choice != null && choice !== 'none' && choice !== 'auto') {
      throw badRequest(
        "Invalid value for 'tool_choice': it asks for a tool call but no 'tools' are given.",
        'tool_choice',
        'invalid_value',
      );
    }
    return null;
  }
  if (choice === 'none') return null;
  let allowed = tools;
  if (typeof choice === 'object' && choice !== null) {
    const name = choice.function.name;
    allowed = tools.filter((t) => t.function.name === name);
    if (allowed.length === 0) {
      throw badRequest(
        `Invalid value for 'tool_choice': no tool named '${boundedText(name)}' is among 'tools'.`,
        'tool_choice.function.name',
        'invalid_value',
      );
    }
  }
  const names = new Set<string>();
  for (const t of tools) {
    if (names.has(t.function.name))
      throw badRequest(
        `Invalid 'tools': two tools are named '${boundedText(t.function.name)}'.`,
        'tools',
        'invalid_value',
      );
    names.add(t.function.name);
  }
  const branches = allowed.map((t) => ({
    type: 'object',
    properties: { name: { const: t.function.name }, arguments: t.function.parameters ?? { type: 'object' } },
    required: ['name', 'arguments'],
    additionalProperties: false,
  }));
  return branches.length === 1 ? branches[0]! : { anyOf: branches };
}

/** The text a past assistant call is rendered as: the same JSON the model writes for a call. */
export function renderToolCall(call: z.infer<typeof ToolCall>): string {
  let args: unknown;
  try {
    args = JSON.parse(call.function.arguments);
  } catch {
    args = call.function.arguments;
  }
  return JSON.stringify({ name: call.function.name, arguments: args });
}

/** A generated call as OpenAI returns it, or null when the text is not a whole call (cut by max_tokens). */
export function parseToolCall(
  text: string,
): { id: string; type: 'function'; function: { name: string; arguments: string } } | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null || typeof (v as { name?: unknown }).name !== 'string') return null;
  const { name, arguments: args } = v as { name: string; arguments: unknown };
  return {
    id: `call_${randomBytes(12).toString('base64url')}`,
    type: 'function',
    function: { name, arguments: JSON.stringify(args) },
  };
}
