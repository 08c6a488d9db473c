/**
 * @module is-record
 * The one test for "a parsed JSON or YAML value is a mapping": an object, not null, not an array.
 */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
