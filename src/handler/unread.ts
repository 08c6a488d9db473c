/**
 * @module handler/unread
 * The refusal of requests an envelope could not read (handler/envelope.ts), made before any
 * request of the batch reached the handler: running the others is their first run, so it is
 * safe even for a stateful model, whose refused batches are otherwise never run again.
 */
import { InputErrors } from './types.js';

export class UnreadRequests extends InputErrors {}
