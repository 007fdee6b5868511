/**
 * The only loader of roam's Node-API addon (native/), and the only place that
 * knows where its helper executables live. Everything here is typed; nothing
 * crosses this boundary as `any`.
 */
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { RoamError } from '../errors/roam-error.js';

/** Errors thrown by the addon carry these properties (see native/src/addon.c). */
export interface NativeErrorFields {
  errno: number;
  code: string;
  syscall: string;
  path: string;
}

interface NativeAddon {
  createNetns(path: string): void;
  removeNetns(path: string): void;
  enterNetns(path: string): number;
  restoreNetns(savedFd: number): void;
  /** [ours, theirs]: a connected AF_UNIX SOCK_SEQPACKET pair, not close-on-exec */
  seqpacketPair(): [number, number];
  /** runs nft commands inside the netns at `path`; returns nft's output */
  nftRun(path: string, commands: string): string;
  /** sends whole IPv4 packets from inside the netns at `path` (sendmmsg on an IPPROTO_RAW socket), each with skb mark `mark` */
  rawSendIpv4(path: string, packets: readonly Buffer[], mark: number): { sent: number; failed: number; errno: number };
  /** takes the TCP sockets of process `pid` out of repair mode (borrowed with pidfd_getfd); returns how many were switched */
  tcpRepairOff(pid: number): number;
  tcpPace(pid: number, localPort: number, bytesPerSecond: number): number;
  tryLockFile(path: string): number;
  /** mounts an overlay filesystem at `target`; `options` as overlayfs takes them (lowerdir=…,upperdir=…,workdir=…) */
  mountOverlay(target: string, options: string): void;
  /** detaches whatever is mounted at `target` (nothing mounted counts as done) */
  unmount(target: string): void;
}

const releaseDir = fileURLToPath(new URL('../../../native/build/Release/', import.meta.url));

export const nativePaths = {
  addon: `${releaseDir}roam_native.node`,
  shim: `${releaseDir}roam-shim`,
  nsexec: `${releaseDir}roam-nsexec`,
  hold: `${releaseDir}roam-hold`,
  criuHook: `${releaseDir}roam-criu-hook`,
} as const;

let addon: NativeAddon | undefined;

export function native(): NativeAddon {
  if (addon) return addon;
  if (!existsSync(nativePaths.addon)) {
    throw new RoamError('PRECONDITION', `native addon not built (${nativePaths.addon}); run 'npm run setup'`);
  }
  const require = createRequire(import.meta.url);
  addon = require(nativePaths.addon) as NativeAddon;
  return addon;
}

export function isNativeError(err: unknown): err is Error & NativeErrorFields {
  return err instanceof Error && typeof (err as Partial<NativeErrorFields>).errno === 'number' && typeof (err as Partial<NativeErrorFields>).syscall === 'string';
}
