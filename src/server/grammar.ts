/**
 * Structured output: a request's response_format or tool call compiled to a JSON grammar (cached
 * by schema), and the 400s for schemas that cannot be enforced or cannot fit the completion.
 */
import { badRequest } from './api-error.js';
import { JsonGrammar } from './constrain/json-constraint.js';
import { SchemaError } from './constrain/schema.js';
import type { ServedModel } from './model-host.js';
import type { PromptWorker } from './prompt-worker.js';
import type { ChatRequest } from './request-schema.js';
import { toolCallSchema } from './tools.js';

/**
 * Compiled schemas by their JSON text (compiling is cheap, the mask cache inside is not). With a
 * `masks` worker, their masks are computed there rather than on the event loop.
 */
export class GrammarCache {
  private readonly map = new Map<string, JsonGrammar>();
  constructor(
    private readonly masks: PromptWorker | null = null,
    private readonly limit = 32,
  ) {}

  async get(model: ServedModel, prompts: PromptWorker, schema: unknown): Promise<JsonGrammar> {
    const key = JSON.stringify(schema);
    let g = this.map.get(key);
    if (g) {
      this.map.delete(key);
    } else {
      const vocab = await model.constraintVocabulary(prompts);
      const masks = this.masks;
      g = new JsonGrammar(schema, vocab, masks && ((output) => masks.constraintMask(key, vocab, output)));
    }
    this.map.set(key, g);
    if (this.map.size > this.limit) this.map.delete(this.map.keys().next().value!);
    return g;
  }
}

/** What compiling a request's grammar needs from the server. */
interface GrammarContext {
  model: ServedModel;
  grammars: GrammarCache;
  prompts: PromptWorker;
}

const SCHEMA_PARAM = 'response_format.json_schema.schema';

/** The request's compiled response_format; 400 for a schema that cannot be enforced or that no value satisfies. */
export async function grammarOf(
  ctx: GrammarContext,
  req: { response_format?: ChatRequest['response_format'] },
): Promise<JsonGrammar | null> {
  const rf = req.response_format;
  if (!rf || rf.type === 'text') return null;
  const schema = rf.type === 'json_object' ? { type: 'object' } : (rf.json_schema.schema ?? {});
  return compileSchema(ctx, schema, SCHEMA_PARAM);
}

async function compileSchema(ctx: GrammarContext, schema: unknown, param: string): Promise<JsonGrammar> {
  try {
    return await ctx.grammars.get(ctx.model, ctx.prompts, schema);
  } catch (e) {
    // RangeError: a schema nested deep enough to overflow the stack while being read.
    if (e instanceof SchemaError || e instanceof RangeError) {
      const why = e instanceof SchemaError ? e.message : 'the schema is nested too deeply';
      throw badRequest(`Invalid '${param}': ${why}.`, param, 'invalid_json_schema');
    }
    throw e;
  }
}

/** The grammar of the tool call a chat request asks for (tools.ts), or null for plain text. */
export async function toolGrammarOf(ctx: GrammarContext, req: ChatRequest): Promise<JsonGrammar | null> {
  const schema = toolCallSchema(req.tools, req.tool_choice);
  if (!schema) return null;
  if (req.response_format && req.response_format.type !== 'text') {
    const message =
      "'response_format' cannot be combined with a tool call ('tools' with 'tool_choice' other than \"none\").";
    throw badRequest(message, 'response_format', 'invalid_value');
  }
  return compileSchema(ctx, schema, 'tools');
}

/** 400 when even the shortest value the grammar allows cannot fit in `maxTokens` tokens. */
export function checkGrammarFits(grammar: JsonGrammar | null, maxTokens: number, limit: string): void {
  if (!grammar || maxTokens === 0) return;
  const perToken = grammar.vocab.maxTokenBytes;
  if (grammar.minBytes <= maxTokens * perToken) return;
  throw badRequest(
    `Invalid '${SCHEMA_PARAM}': the shortest JSON value it allows is ${grammar.minBytes} bytes, ` +
      `more than the completion can hold (${limit}: ${maxTokens} tokens of at most ${perToken} bytes).`,
    SCHEMA_PARAM,
    'invalid_json_schema',
  );
}
