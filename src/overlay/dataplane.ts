/**
 * The port between the overlay logic and the kernel. The kernel adapter is
 * kernel-dataplane.ts; unit tests use an in-memory fake with the same contract.
 */
import type { FdbEntry } from '../sys/netlink/fdb.js';

export interface OverlayDevices {
  bridgeIndex: number;
  vxlanIndex: number;
  vxlanName: string;
}

export interface ManagedFdbEntry {
  entry: FdbEntry;
  deviceName: string;
}

export interface OverlayDataplane {
  /** Creates or verifies the bridge and VXLAN device; never disturbs correct existing state. */
  ensureDevices(): Promise<OverlayDevices>;
  /** The FDB entries roam manages (its MACs and flood entries on its devices). */
  listManagedFdb(devices: OverlayDevices): Promise<ManagedFdbEntry[]>;
  /** bridge-port ifindex and name for each local endpoint, by endpoint name */
  endpointPorts(): Promise<Map<string, { ifindex: number; name: string }>>;
  ensureFdb(change: ManagedFdbEntry): Promise<void>;
  deleteFdb(change: ManagedFdbEntry): Promise<void>;
}
