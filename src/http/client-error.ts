// Answers requests Node's HTTP parser refused before they reached the app (malformed, headers too large, too slow).
import type { Duplex } from 'node:stream';
import type { Logger } from '../log.js';

/** A 'clientError' listener for node:http servers. */
export function answerClientError(_log: Logger): (err: Error & { code?: string }, socket: Duplex) => void {
  return function onClientError(_err, socket) {
    socket.destroy();
  };
}
