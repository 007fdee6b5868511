/**
 * A mode is how an endpoint's memory gets from the source to the target, and
 * what each side does for it. The sequence (../sequence.ts) is the same for
 * every mode; it asks the mode at the few points where they differ. A new mode
 * is one file here and one line in index.ts.
 */
import type { Checkpointer, DumpRequest, DumpResult, LazyDump, LazyDumpRequest } from '../../checkpoint/checkpointer.js';
import type { LazyPagesDaemon } from '../../checkpoint/lazy-pages.js';
import type { PageServer } from '../../checkpoint/page-server.js';
import type { PageServerTls } from '../../checkpoint/page-server-tls.js';
import type { MoveMode } from '../../records/migration-report.js';
import type { LazySource, Prepared } from '../target-agent.js';

/** The source's dump, as the sequence hands it to the mode. */
export interface SourceDump {
  checkpointer: Checkpointer;
  /** the netns, images, slot, TLS and journal callback every dump takes */
  request: DumpRequest;
  /** the target's answer to prepare */
  prepared: Prepared;
  /** the target agent's peer address */
  targetAddress: string;
  /** post-copy: where the lazy page server listens, on this node's underlay address (chosen, journaled and gated before the freeze) */
  lazyServer(): Pick<LazyDumpRequest, 'address' | 'port' | 'gated' | 'onRefusal'>;
}

/** How memory left the source: the dump's result, and a page server that still serves it (post-copy). */
export interface Dumped {
  result: DumpResult;
  lazy?: LazyDump;
}

/** The target's arrival, as the mode sees it. */
export interface ArrivalMemory {
  imagesDir: string;
  /** where the target's page servers listen */
  underlayAddress: string;
  pageTls: PageServerTls | undefined;
  /** the address the source prepared it from: the only one (with this node's) its page server answers */
  sourceAddress?: string;
  /** streamed: the page server the source's dump writes to */
  pageServer?: PageServer;
  /** post-copy: the daemon that pulls the memory the restored tree still lacks */
  lazyPages?: LazyPagesDaemon;
}

export interface ModeStrategy {
  readonly name: MoveMode;
  /** false: the target is built after the dump, inside the frozen window (the baseline the bench measures against) */
  readonly preparesBeforeFreeze: boolean;
  /** a container can move this way (runc drives its dump, so not every CRIU option is there) */
  readonly forContainers: boolean;
  /** the source serves the memory after the dump (a lazy page server), set up before the freeze */
  readonly servesMemory?: boolean;
  /** target, at prepare: what it sets up for the memory beyond the locked namespace; the answer goes to the source */
  prepareArrival(a: ArrivalMemory): Promise<Prepared>;
  /** source: freeze and dump, sending the memory the mode's way */
  dump(s: SourceDump): Promise<Dumped>;
  /** target, before its restore: what the restore needs of the memory (waited for, or started) */
  beforeRestore(a: ArrivalMemory, lazySource: LazySource | undefined, arrivalId: string): Promise<void>;
}
