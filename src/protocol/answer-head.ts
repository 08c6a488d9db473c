/**
 * @module protocol/answer-head
 * A handler's answer as it comes back from its worker, before any route applies it. Its status,
 * reason phrase and headers are the handler's to choose, so they are untrusted: one that no HTTP
 * answer can carry (a status outside 200-599, a line break in the phrase or in a header, a header
 * name that is no token) is refused here, once, for every path that answers (one body, streamed,
 * KServe, gRPC). Applied as it is, it would throw inside the reply, where nothing catches it, and
 * take the front end and every model down. Framing and hop-by-hop headers belong to the server's
 * connection, not to the answer: a handler's are dropped, as a proxy drops them, since a
 * TorchServe handler that set a correct Content-Length must keep working.
 */
import type { WireResponse } from './messages.js';

/** RFC 9110's token: what a header name is made of. */
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
/** What Node writes in a header value or a reason phrase: no control character but tab, nothing above U+00FF. */
const FIELD_TEXT = /^[\t\x20-\x7e\x80-\xff]*$/;
const CONNECTION_HEADERS = new Set(['connection', 'content-length', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade']);

/**
 * The answer as it may be sent, or why it cannot be sent. A header whose value is null or
 * undefined is left out, as an unset one; so are the connection's headers.
 */
export function checkedAnswer(r: WireResponse): WireResponse | string {
  if (!(r.body instanceof Uint8Array)) return 'its body is not bytes';
  const { status, phrase = '', headers } = r as { status: unknown; phrase: unknown; headers: unknown };
  if (typeof status !== 'number' || !Number.isInteger(status) || status < 200 || status > 599) {
    return `status ${shown(status)} is not the status of an HTTP answer (an integer from 200 to 599)`;
  }
  if (phrase !== null && !isFieldText(phrase)) return `its reason phrase ${FIELD_RULE}`;
  if (typeof headers !== 'object' || headers === null) return 'its headers are not a map of names to values';
  const entries = Object.entries(headers as Record<string, unknown>);
  for (const [name, value] of entries) {
    if (!TOKEN.test(name)) return `header name ${JSON.stringify(name)} is not an HTTP token`;
    if (value !== null && value !== undefined && !isFieldText(value)) return `header ${name}: its value ${FIELD_RULE}`;
  }
  // Values reach Fastify and Node as strings: a number where a string is read threw inside the reply.
  if (typeof phrase === 'string' && entries.every(([name, value]) => typeof value === 'string' && isSent(name, value))) return r;
  const sent = entries.filter(([name, value]) => isSent(name, value)).map(([name, value]) => [name, String(value)]);
  return { ...r, phrase: phrase === null ? '' : String(phrase), headers: Object.fromEntries(sent) };
}

function isSent(name: string, value: unknown): boolean {
  return value !== null && value !== undefined && !CONNECTION_HEADERS.has(name.toLowerCase());
}

const FIELD_RULE = 'is not text HTTP allows (it holds a control character or one above U+00FF)';

/** Text (a string, or a number as handlers may set one) that Node writes in a header or status line. */
function isFieldText(value: unknown): boolean {
  return (typeof value === 'string' || typeof value === 'number') && FIELD_TEXT.test(String(value));
}

function shown(value: unknown): string {
  return typeof value === 'string' ? JSON.stringify(value) : String(value);
}
