/**
 * Desired state -> diff -> apply, idempotently, one run at a time. Triggers
 * coalesce: a burst of location changes costs one run. A failed write is
 * reported and retried on the next run; it never aborts the others.
 */
import { describeError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import type { ManagedFdbEntry, OverlayDataplane, OverlayDevices } from './dataplane.js';
import { diffFdb } from './diff.js';
import { desiredFdb, type EndpointLocation, type PeerNode } from './model.js';

export interface OverlayState {
  self: string;
  peers: readonly PeerNode[];
  endpoints: readonly EndpointLocation[];
}

export interface ReconcileResult {
  added: number;
  removed: number;
  errors: string[];
}

export class OverlayReconciler {
  private devices: OverlayDevices | undefined;
  private running: Promise<ReconcileResult> | undefined;
  private rerun = false;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly dataplane: OverlayDataplane,
    private readonly state: () => OverlayState,
    private readonly events: EventBus,
  ) {}

  /** Sets up (or adopts) the devices and converges once. */
  async start(resyncMs: number): Promise<ReconcileResult> {
    this.devices = await this.dataplane.ensureDevices();
    const first = await this.reconcile();
    this.timer = setInterval(() => void this.reconcile().catch(() => undefined), resyncMs);
    this.timer.unref();
    return first;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  get ready(): boolean {
    return this.devices !== undefined;
  }

  get overlayDevices(): OverlayDevices | undefined {
    return this.devices;
  }

  /** Converges now; if a run is under way, one more run follows it. */
  reconcile(): Promise<ReconcileResult> {
    if (this.running) {
      this.rerun = true;
      return this.running;
    }
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async loop(): Promise<ReconcileResult> {
    let result: ReconcileResult;
    do {
      this.rerun = false;
      result = await this.runOnce();
    } while (this.rerun);
    return result;
  }

  private async runOnce(): Promise<ReconcileResult> {
    const started = performance.now();
    const devices = this.devices;
    if (!devices) throw new Error('reconcile before start');
    const errors: string[] = [];
    let added = 0;
    let removed = 0;
    try {
      const ports = await this.dataplane.endpointPorts();
      const state = this.state();
      const desired: ManagedFdbEntry[] = desiredFdb({ ...state, localPorts: new Set(ports.keys()) }).map((d) => {
        const port = d.device.kind === 'endpoint-port' ? ports.get(d.device.endpoint) : undefined;
        return {
          entry: { ifindex: port ? port.ifindex : devices.vxlanIndex, mac: d.mac, table: d.table, dst: d.dst, pinned: true },
          deviceName: port ? port.name : devices.vxlanName,
        };
      });
      const plan = diffFdb(desired, await this.dataplane.listManagedFdb(devices));
      for (const change of plan.add) {
        const ok = await this.apply(() => this.dataplane.ensureFdb(change), errors);
        this.events.emit('overlay.fdb_write', { op: 'ensure', table: change.entry.table, ok });
        if (ok) added++;
      }
      for (const change of plan.remove) {
        const ok = await this.apply(() => this.dataplane.deleteFdb(change), errors);
        this.events.emit('overlay.fdb_write', { op: 'delete', table: change.entry.table, ok });
        if (ok) removed++;
      }
    } catch (err) {
      errors.push(describeError(err));
    }
    for (const message of errors) this.events.emit('overlay.error', { message });
    this.events.emit('overlay.reconciled', { added, removed, errors: errors.length, durationMs: performance.now() - started });
    return { added, removed, errors };
  }

  private async apply(write: () => Promise<void>, errors: string[]): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (err) {
      errors.push(describeError(err));
      return false;
    }
  }
}
