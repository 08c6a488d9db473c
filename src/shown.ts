/**
 * @module shown
 * A client's text in a message: quoted, escaped (a newline cannot forge a log line), cut short.
 */
export function shown(text: string): string {
  return JSON.stringify(text.length > 100 ? `${text.slice(0, 100)}...` : text);
}
