/**
 * containerd, the program: started in a network namespace with a config of
 * roam's (container/containerd-config.ts), and asked through its own client
 * (`ctr`) whether it answers and which plugins it loaded.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { RoamError } from '../errors/roam-error.js';
import { spawnDetachedInNetns } from './launch.js';
import { cleanEnv } from './proc.js';

const run = promisify(execFile);
export const CONTAINERD = '/usr/bin/containerd';
const CTR = '/usr/bin/ctr';

/** Starts containerd with `configPath` inside the namespace at `netnsPath`, detached, logging to `logPath`; returns its pid. */
export function startContainerd(netnsPath: string, configPath: string, logPath: string): number {
  return spawnDetachedInNetns(netnsPath, [CONTAINERD, '--config', configPath], logPath);
}

async function ctr(address: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await run(CTR, ['--address', address, ...args], { env: cleanEnv(), timeout: 10000 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message?: string };
    throw new RoamError('PRECONDITION', `ctr ${args.join(' ')} on ${address}: ${(e.stderr ?? e.message ?? String(err)).trim().split('\n').slice(-1)[0]}`);
  }
}

/** The server's version, once it answers on `address`. */
export async function containerdVersion(address: string): Promise<string> {
  const out = await ctr(address, ['version']);
  const server = out.split('Server:')[1] ?? '';
  return /Version:\s*(\S+)/.exec(server)?.[1] ?? 'unknown';
}

/** The plugins it loaded, as `ctr plugins ls` lists them. */
export async function containerdPlugins(address: string): Promise<{ type: string; id: string; status: string }[]> {
  const out = await ctr(address, ['plugins', 'ls']);
  return out.split('\n').slice(1).map((l) => l.trim().split(/\s+/)).filter((f) => f.length >= 4)
    .map((f) => ({ type: f[0]!, id: f[1]!, status: f[f.length - 1]! }));
}
