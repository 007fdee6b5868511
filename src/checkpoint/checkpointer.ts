/**
 * The checkpointer: what CRIU does to one endpoint, for the migration
 * sequence. It knows nothing of nodes or agents; migration/ decides when
 * and where. Two implementations: a process tree under roam-shim, dumped by
 * CRIU over its RPC (criu-tree.ts), and a runc container, whose runtime
 * drives CRIU itself (runc-container.ts).
 *
 * Dump: the tree is frozen, then its namespace is locked (roam's own lock,
 * at CRIU's network-lock notification, so what the lock drops can be kept
 * for the handover; CRIU's lock is skipped), its established TCP
 * connections are checkpointed in repair mode, and on success the tree is
 * gone (its sockets closed silently, still in repair mode, so no peer sees
 * a FIN or RST). A dump that fails leaves the tree running and the lock
 * lifted. The namespace is external: it stays where it is, and restore
 * joins the tree to whichever namespace it is given under the same key; the
 * restoring side owns the lock there and lifts it itself.
 */
import type { PageServerRefusal } from '../sys/criu/rpc.js';
import type { CriuNotify } from './notify.js';
import type { PageServerTls } from './page-server-tls.js';

/** A process known by pid and start time, so that a recycled pid is never taken for it. */
export interface ProcessRef {
  pid: number;
  startTime: number;
}

/** A notification CRIU stopped at, with its time since the request began (ms). */
export interface HookTime {
  name: string;
  atMs: number;
}

export interface Checkpointer {
  /** 'process': a tree under roam-shim, dumped by CRIU over its RPC; 'container': a runc container (runc drives CRIU) */
  readonly kind: 'process' | 'container';
  /** Freeze and dump. The namespace is locked (roam's own nft lock, sys/nft lockNetns) at CRIU's network-lock notification; on failure CRIU resumed the tree and the lock is lifted. */
  dump(req: DumpRequest): Promise<DumpResult>;
  /** Post-copy dump (memory kept back and served by a lazy page server). Absent where the implementation cannot (containers). */
  lazyDump?(req: LazyDumpRequest): Promise<LazyDump>;
  restore(req: RestoreRequest): Promise<RestoreResult>;
}

/** What the dump has started with, for a journal that must outlive this process. */
export interface DumpStarted {
  /** the process running the dump: CRIU (a tree), or runc (a container, CRIU under it) */
  dumper: ProcessRef;
  /** what a restore from its images will need ([] for a container) */
  pipeKeys: string[];
  /** 0 for a container */
  tcpConnections: number;
}

export interface DumpRequest {
  netns: string;
  imagesDir: string;
  /** stream memory pages to this page server while dumping (they never land in imagesDir) */
  pageServer?: { address: string; port: number };
  /** page-server connections (streamed, or a lazy dump's server) over TLS with these files */
  tls?: PageServerTls;
  /** this host's dump slot, taken beforehand (dumpSlot) so that waiting for it is not counted as frozen; released when CRIU's parasite is gone */
  slot?: () => void;
  /** CRIU's notifications, after roam's own (the lock at network-lock) */
  notify?: CriuNotify;
  /** the dump is running: who runs it, as soon as its pid is known */
  onStarted?(s: DumpStarted): void;
}

export interface LazyDumpRequest extends DumpRequest {
  /** where the page server listens: this node's underlay address */
  address: string;
  port: number;
  /** its port was gated for this dump (sys/port-gate.ts): the gate is lifted when serving ends */
  gated?: boolean;
  /** the page server turned a client away at the TLS handshake (and so ended) */
  onRefusal?(refusal: PageServerRefusal): void;
}

export interface RestoreRequest {
  netns: string;
  imagesDir: string;
  /** "pipe:[inode]" keys of the dumped tree's stdio (DumpResult.pipeKeys); a container has none */
  pipeKeys: string[];
  /** leave the restored tree stopped (SIGSTOP); the caller continues it once its network is ready */
  leaveStopped: boolean;
  /** post-copy: anonymous memory comes from the lazy-pages daemon already waiting in imagesDir (startLazyPages) */
  lazyPages?: boolean;
  notify?: CriuNotify;
}

export interface DumpResult {
  durationMs: number;
  /** bytes of images moved: the files here, plus the memory sent to a page server */
  imageBytes: number;
  /** "pipe:[inode]" of the tree's stdout and stderr, the keys restore hands new pipes under */
  pipeKeys: string[];
  tcpConnections: number;
  /** post-copy: bytes of memory kept back, for the target to pull after it resumed (0 otherwise) */
  lazyBytes: number;
  /** what the dumped connections had in flight when the service froze, from CRIU's images */
  tcpInFlight: TcpInFlight;
  hooks: HookTime[];
}

export interface RestoreResult {
  pid: number;
  shimPid: number;
  durationMs: number;
  hooks: HookTime[];
}

export interface TcpInFlight {
  connections: number;
  /** connections with data sent to the peer and not yet acknowledged */
  unackedToPeer: number;
  unackedBytes: number;
  /** connections with data received from the peer the service had not read yet */
  unreadFromPeer: number;
  timestamps: number;
  sack: number;
}

export interface LazyDump {
  /**
   * Resolves once every image but the kept-back memory is written and the
   * page server listens: the target can take the images and restore. Rejects
   * if the dump failed (the tree then runs on, unlocked).
   */
  ready: Promise<DumpResult>;
  /**
   * Settles when CRIU's page server has ended: the target closed its
   * connection, having pulled everything or not (CRIU cannot tell; the
   * target can). The tree is then still there, stopped, its connections in
   * repair mode: the caller kills it, or resumes it (resumeInPlace) if the
   * target never took over.
   */
  served: Promise<void>;
  /** where the page server listens: this node's underlay address */
  address: string;
  port: number;
  /** the dumped tree's root */
  root: ProcessRef;
  /** the swrk process serving the pages (it outlives the agent) */
  dumper: ProcessRef;
  /** ends a page server nobody connected to (a migration that failed before the restore) */
  cancel(): Promise<void>;
}

export type { PullOutcome } from './lazy-pages.js';
