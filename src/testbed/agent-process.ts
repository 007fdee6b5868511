/**
 * Testbed agents are ordinary `roam agent` processes, started inside their
 * node's network namespace only (roam-nsexec), detached, logging to a file.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { callJson } from '../http/client.js';
import { RoamError } from '../errors/roam-error.js';
import { spawnDetachedInNetns } from '../sys/launch.js';
import { isSameProcessAlive, processStartTime } from '../sys/proc.js';

const mainScript = fileURLToPath(new URL('../main.js', import.meta.url));

export function startAgent(netnsPath: string, configPath: string, logPath: string): number {
  return spawnDetachedInNetns(netnsPath, [process.execPath, mainScript, 'agent', '--config', configPath], logPath);
}

export function isAgentRunning(pid: number): boolean {
  const startTime = pid ? processStartTime(pid) : undefined;
  return startTime !== undefined && isSameProcessAlive(pid, startTime);
}

export async function waitAgentReady(apiSocket: string, pid: number, logPath: string, timeoutMs = 20000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      const r = await callJson<{ ready: boolean }>({ socketPath: apiSocket }, 'GET', '/v1/ready', undefined, { timeoutMs: 1000 });
      if (r.ready) return;
    } catch {
      // not listening yet
    }
    if (!isAgentRunning(pid)) throw new RoamError('TESTBED', `agent exited during start-up; see ${logPath}`);
    await sleep(50);
  }
  throw new RoamError('TESTBED', `agent not ready after ${timeoutMs} ms; see ${logPath}`);
}

export async function stopAgent(pid: number, graceMs = 3000): Promise<void> {
  if (!isAgentRunning(pid)) return;
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (Date.now() < deadline && isAgentRunning(pid)) await sleep(20);
  if (isAgentRunning(pid)) process.kill(pid, 'SIGKILL');
  while (isAgentRunning(pid)) await sleep(10);
}
