// Plain messages for zod's issues: what is missing or wrong, and what to give instead; never the value that was given.
import type { z } from 'zod';

type Issue = Parameters<z.core.$ZodErrorMap>[0];

interface SchemaLike {
  description?: string;
  _zod: { def: Record<string, unknown> & { type: string } };
}

const isSchema = (v: unknown): v is SchemaLike =>
  v !== null && typeof v === 'object' && '_zod' in v && typeof (v as SchemaLike)._zod?.def?.type === 'string';

const quoteList = (values: readonly unknown[]): string => values.map((v) => JSON.stringify(v)).join(', ');

/** What kind of value was given, never the value itself (it may be a password in the wrong place). */
export function kindOf(input: unknown): string {
  if (input === null) return 'an empty value (null)';
  if (Array.isArray(input)) return 'a list';
  switch (typeof input) {
    case 'string':
      return 'a string';
    case 'number':
      return Number.isInteger(input) ? 'a whole number' : 'a number';
    case 'boolean':
      return input ? 'true' : 'false';
    case 'object':
      return 'a mapping';
    default:
      return typeof input;
  }
}

/** What a schema accepts, in words: its description when it has one (see `.describe()` in schema.ts). */
function expected(schema: unknown, fallback?: string): string {
  if (!isSchema(schema)) return fallback ?? 'another value';
  if (schema.description !== undefined) return schema.description;
  const def = schema._zod.def;
  switch (def.type) {
    case 'string':
      return 'a string';
    case 'number':
      return 'a number';
    case 'int':
      return 'a whole number';
    case 'boolean':
      return 'true or false';
    case 'array': {
      const element = isSchema(def.element) ? def.element._zod.def.type : undefined;
      if (element === 'object' || element === 'record') return 'a list of mappings';
      if (element === 'string') return 'a list of strings';
      return `a list (of ${expected(def.element)})`;
    }
    case 'object':
    case 'record':
      return 'a mapping of keys to values';
    case 'enum':
      return `one of ${quoteList(Object.values(def.entries as Record<string, unknown>))}`;
    case 'literal':
      return quoteList(def.values as unknown[]);
    case 'union':
      return (def.options as unknown[]).map((o) => expected(o)).join(', or ');
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
      return expected(def.innerType, fallback);
    case 'pipe':
      return expected(def.in, fallback);
    default:
      return fallback ?? 'another value';
  }
}

const TYPE_WORDS: Record<string, string> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  array: 'a list',
  object: 'a mapping of keys to values',
  record: 'a mapping of keys to values',
};

/** "is required: …" for a missing value, "must be …; got …" for a wrong one. */
function requiredOrWrong(input: unknown, what: string): string {
  return input === undefined ? `is required: ${what}` : `must be ${what}; got ${kindOf(input)}`;
}

function sizeMessage(issue: Issue, bound: 'at least' | 'at most'): string | undefined {
  const { origin, inclusive } = issue as { origin?: string; inclusive?: boolean };
  const limit = Number(
    (issue as { minimum?: unknown; maximum?: unknown })[bound === 'at least' ? 'minimum' : 'maximum'],
  );
  switch (origin) {
    case 'array':
      if (bound === 'at least' && limit === 1) return 'must list at least one entry (it is empty)';
      return `must list ${bound} ${limit} ${limit === 1 ? 'entry' : 'entries'}`;
    case 'string':
      if (bound === 'at least' && limit === 1) return 'must not be empty';
      return `must be ${bound} ${limit} characters long`;
    case 'number':
    case 'int':
      if (inclusive === false) return `must be ${bound === 'at least' ? 'greater' : 'less'} than ${limit}`;
      return `must be ${bound} ${limit}`;
    default:
      return undefined;
  }
}

const shortKey = (key: string) => JSON.stringify(key.length > 60 ? `${key.slice(0, 57)}...` : key);

/**
 * The message for one zod issue, as the error map of a parse (`safeParse(doc, { error: configIssueMessage })`).
 * Messages set in the schema (refinements, `error:`) win over this; undefined leaves zod's own text.
 */
export function configIssueMessage(issue: Issue): string | undefined {
  const input = issue.input;
  switch (issue.code) {
    case 'invalid_type': {
      const typeWord = TYPE_WORDS[issue.expected] ?? issue.expected;
      return requiredOrWrong(input, expected(issue.inst, typeWord));
    }
    case 'invalid_union': {
      const { discriminator, options, note } = issue as { discriminator?: string; options?: unknown[]; note?: string };
      if (note === 'No matching discriminator' && options !== undefined) {
        const given =
          discriminator !== undefined ? (input as Record<string, unknown> | undefined)?.[discriminator] : undefined;
        return given === undefined
          ? `is required: one of ${quoteList(options)}`
          : `must be one of ${quoteList(options)}${typeof given === 'string' ? '' : `; got ${kindOf(given)}`}`;
      }
      // The one option whose type fit, but not its contents (a list with a bad entry): say what is wrong inside.
      const errors = (issue as { errors?: { path?: PropertyKey[]; code?: string; message?: string }[][] }).errors ?? [];
      const mismatch = (e: { path?: PropertyKey[]; code?: string }) =>
        (e.path ?? []).length === 0 && ['invalid_type', 'invalid_value', 'invalid_union'].includes(e.code ?? '');
      const fitting = errors.filter((list) => !list.every(mismatch));
      if (input !== undefined && fitting.length === 1) {
        return fitting[0]!
          .map((e) => `${(e.path ?? []).length > 0 ? `at ${(e.path ?? []).map(String).join('.')}: ` : ''}${e.message}`)
          .join('; ');
      }
      return requiredOrWrong(input, expected(issue.inst));
    }
    case 'invalid_value': {
      const values = (issue as { values?: unknown[] }).values ?? [];
      const what = values.length === 1 ? quoteList(values) : `one of ${quoteList(values)}`;
      return input === undefined ? `is required: ${what}` : `must be ${what}`;
    }
    case 'too_small':
      return sizeMessage(issue, 'at least');
    case 'too_big':
      return sizeMessage(issue, 'at most');
    case 'not_multiple_of':
      return `must be a multiple of ${String((issue as { divisor?: unknown }).divisor)}`;
    case 'unrecognized_keys': {
      const keys = (issue as { keys?: string[] }).keys ?? [];
      const inst = issue.inst as { _zod?: { def?: { shape?: Record<string, unknown> } } } | undefined;
      const known = Object.keys(inst?._zod?.def?.shape ?? {});
      const which = keys.length === 1 ? `key ${shortKey(keys[0]!)}` : `keys ${keys.map(shortKey).join(', ')}`;
      return (
        `has an unknown ${which}: check the spelling and the indentation` +
        (known.length > 0 ? ` (the keys here are: ${known.join(', ')})` : '')
      );
    }
    case 'invalid_key': {
      const nested = (issue as { issues?: { message?: string }[] }).issues ?? [];
      const why = nested.map((n) => n.message).filter((m) => m !== undefined && m !== '');
      return `is not a usable key${why.length > 0 ? `: ${why.join('; ')}` : ''}`;
    }
    case 'invalid_format': {
      const format = (issue as { format?: unknown }).format;
      return `has the wrong form${typeof format === 'string' ? ` (it must be a ${format})` : ''}`;
    }
    default:
      return undefined;
  }
}
