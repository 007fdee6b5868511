/**
 * Schema checks that end in one clear sentence: which field, what was wrong.
 * Shared by config, API and wire-protocol parsing.
 */
import type { TSchema, Static } from '@sinclair/typebox';
import { Value, type ValueError } from '@sinclair/typebox/value';
import { RoamError } from '../errors/roam-error.js';
import type { ErrorCode } from '../errors/codes.js';
import '../records/formats.js';

export function describeValueError(e: ValueError): string {
  const field = e.path === '' ? '(top level)' : e.path.slice(1).replaceAll('/', '.');
  const schema = e.schema as { description?: string };
  const hint = schema.description ? ` (${schema.description})` : '';
  if (e.message.startsWith('Unexpected property')) return `${field}: unknown field`;
  if (e.message.startsWith('Expected required property')) return `${field}: required field is missing`;
  // A choice among names (a mode, a mechanism): the names say more than "expected union value".
  const choices = (e.schema as { anyOf?: { const?: unknown }[] }).anyOf?.map((s) => s.const);
  if (choices?.length && choices.every((c) => typeof c === 'string')) return `${field}: ${JSON.stringify(e.value)} is not one of ${choices.join(', ')}`;
  return `${field}: ${e.message.toLowerCase()}, got ${JSON.stringify(e.value)}${hint}`;
}

/** Applies defaults, then checks; returns the typed value or throws naming every bad field. */
export function parseWithSchema<T extends TSchema>(schema: T, input: unknown, code: ErrorCode, what: string): Static<T> {
  const value = Value.Default(schema, structuredClone(input)) as unknown;
  if (Value.Check(schema, value)) return value;
  const problems = [...Value.Errors(schema, value)]
    // Union and nested-object errors repeat; the first per path is the useful one.
    .filter((e, i, all) => all.findIndex((o) => o.path === e.path) === i)
    .map(describeValueError);
  throw new RoamError(code, `${what}: ${problems.join('; ')}`, { problems });
}
