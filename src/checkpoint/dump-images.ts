/** What a dump left in its images folder, read back. */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readTcpStreams } from '../sys/criu/images.js';
import type { TcpInFlight } from './checkpointer.js';

export function tcpInFlight(imagesDir: string): TcpInFlight {
  const streams = readTcpStreams(imagesDir);
  return {
    connections: streams.length,
    unackedToPeer: streams.filter((s) => s.unackedLen > 0).length,
    unackedBytes: streams.reduce((n, s) => n + s.unackedLen, 0),
    unreadFromPeer: streams.filter((s) => s.inqLen > 0).length,
    timestamps: streams.filter((s) => s.timestamps).length,
    sack: streams.filter((s) => s.sack).length,
  };
}


/** Bytes of the images proper (CRIU's logs are not part of what must travel). */
export function imageBytes(dir: string): number {
  return readdirSync(dir).filter((f) => f.endsWith('.img')).reduce((sum, f) => sum + statSync(join(dir, f)).size, 0);
}

/**
 * Whether the dump whose log is in `imagesDir` finished: CRIU logs it before
 * answering, so this holds even when nobody was left to hear the answer.
 */
export function dumpFinished(imagesDir: string): boolean {
  try {
    return readFileSync(join(imagesDir, 'dump.log'), 'utf8').includes('Dumping finished successfully');
  } catch {
    return false;
  }
}
