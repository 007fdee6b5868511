/**
 * A request body as a peer's upload must be read: never more than a size
 * bound, never waiting longer than an idle bound for the next byte. A
 * declared Content-Length over the bound is refused before a byte is read;
 * a chunked body is cut off at the byte that crosses it, and one that
 * stalls after its idle bound. Either way the answer closes the connection
 * (api/app.ts), so nothing more of the body is read or kept.
 */
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { RoamError } from '../errors/roam-error.js';

export interface BodyBounds {
  maxBytes: number;
  idleMs: number;
}

/** Refuses a body whose declared length is over the bound, before any of it is read. */
export function refuseDeclaredOver(req: IncomingMessage, maxBytes: number, what: string): void {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > maxBytes) throw tooLarge(what, maxBytes, `declares ${declared} bytes`);
}

function tooLarge(what: string, maxBytes: number, how: string): RoamError {
  return new RoamError('TOO_LARGE', `${what}: the body ${how}, more than the ${maxBytes} bytes allowed`, { maxBytes });
}

/** The body's chunks, within `bounds`; a body that breaks one ends with the error and the connection. */
export async function* boundedChunks(req: IncomingMessage, bounds: BodyBounds, what: string): AsyncGenerator<Buffer> {
  refuseDeclaredOver(req, bounds.maxBytes, what);
  const chunks = (req as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let total = 0;
  for (;;) {
    // A timer per chunk, only while waiting for it: the bound is on the sender, not on the consumer. (One timer
    // pushed back per chunk measured slower here: every race leaves a reaction on its idle promise.)
    let timer: NodeJS.Timeout | undefined;
    const idle = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new RoamError('UPLOAD_STALLED', `${what}: no byte for ${bounds.idleMs / 1000} s after ${total} bytes; cut off`, { bytes: total })), bounds.idleMs);
    });
    let next: IteratorResult<Buffer>;
    try {
      next = await Promise.race([chunks.next(), idle]);
    } finally {
      clearTimeout(timer);
    }
    if (next.done) return;
    total += next.value.length;
    if (total > bounds.maxBytes) throw tooLarge(what, bounds.maxBytes, `went past ${total} bytes`);
    yield next.value;
  }
}

/** The same, as a stream for consumers that pipe (tar). */
export function boundedStream(req: IncomingMessage, bounds: BodyBounds, what: string): Readable {
  refuseDeclaredOver(req, bounds.maxBytes, what);
  return Readable.from(boundedChunks(req, bounds, what), { objectMode: false });
}
