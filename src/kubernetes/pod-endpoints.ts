/**
 * Pods that opt in (annotation roam.dev/mobile-ip: "true") get an overlay
 * interface, roam0, with an address of their node's range beside the
 * cluster's eth0: an endpoint whose namespace and process are the pod's.
 * The agent finds the pod's network namespace the way the runtime knows it:
 * a running container's ID from the pod's status (containerd://ID), then
 * runc's state for it under the runtime root (containerd's runc shim keeps
 * it at /run/containerd/runc/k8s.io/ID/state.json), which names the
 * sandbox's namespace the container joined.
 *
 * An EndpointSlice per such pod, labelled with the Service's name
 * (roam.dev/service, or the pod's name), gives in-cluster clients a stable
 * name for the address: a Service without a selector of that name resolves
 * to it. Level-triggered like the other loops: every pod change, slice
 * change and resync compares the pods with what is attached and written.
 */
import type { V1EndpointSlice, V1Pod } from '@kubernetes/client-node';
import type { EndpointRecord } from '../records/endpoint.js';
import { podEndpointName } from '../endpoint/naming.js';
import type { AttachPodRequest } from '../endpoint/manager.js';
import type { PodRef } from '../endpoint/store.js';
import { describeError } from '../errors/roam-error.js';
import type { EventBus } from '../events/bus.js';
import { readRuntimeState, type RuntimeState } from '../sys/runc.js';
import { isConflict, isNotFound, type KubeClient, type Watcher } from './client.js';
import { GROUP, POD_ANNOTATIONS, SLICE_MANAGER } from './resources.js';
import { Rounds } from '../cluster/rounds.js';

/** What the node's endpoint manager offers for pods. */
export interface PodHost {
  pods(): (EndpointRecord & { pod: PodRef })[];
  attachPod(req: AttachPodRequest): Promise<EndpointRecord>;
  /** takes the pod's interface away */
  stop(name: string): Promise<void>;
}

export interface PodEndpointsDeps {
  node: string;
  /** runc's state directory for the pods' containers */
  runtimeRoot: string;
  host: PodHost;
  resyncMs: number;
  events: EventBus;
}

const LABELS = {
  service: 'kubernetes.io/service-name',
  managedBy: 'endpointslice.kubernetes.io/managed-by',
  node: `${GROUP}/node`,
  endpoint: `${GROUP}/endpoint`,
} as const;

interface Wanted {
  name: string;
  pod: V1Pod;
  ref: PodRef;
  state: RuntimeState;
}

/** The ID of a running container of the pod, as containerd names it ("containerd://ID"); undefined if none runs. */
export function runningContainerId(pod: V1Pod): string | undefined {
  const running = (pod.status?.containerStatuses ?? []).find((c) => c.state?.running && c.containerID);
  const id = running?.containerID;
  if (!id) return undefined;
  const sep = id.indexOf('://');
  return sep < 0 ? id : id.slice(sep + 3);
}

/** Whether the pod asked for a mobile IP and is running (not on its way out). */
export function wantsMobileIp(pod: V1Pod): boolean {
  return pod.metadata?.annotations?.[POD_ANNOTATIONS.mobileIp] === 'true' && pod.status?.phase === 'Running' && !pod.metadata?.deletionTimestamp;
}

/** The EndpointSlice that names the pod's overlay address for its Service. */
export function sliceFor(node: string, ep: EndpointRecord, pod: V1Pod): V1EndpointSlice {
  const namespace = pod.metadata?.namespace ?? '';
  const podName = pod.metadata?.name ?? '';
  const ports = (pod.spec?.containers ?? []).flatMap((c) => c.ports ?? []).map((p) => ({
    ...(p.name ? { name: p.name } : {}), port: p.containerPort, protocol: p.protocol ?? 'TCP',
  }));
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: {
      name: `roam-${ep.name}`,
      namespace,
      labels: {
        [LABELS.service]: pod.metadata?.annotations?.[POD_ANNOTATIONS.service] ?? podName,
        [LABELS.managedBy]: SLICE_MANAGER,
        [LABELS.node]: node,
        [LABELS.endpoint]: ep.name,
      },
      // Goes with the pod even when no agent is there to delete it.
      ownerReferences: [{ apiVersion: 'v1', kind: 'Pod', name: podName, uid: pod.metadata?.uid ?? '' }],
    },
    addressType: ep.ip.includes(':') ? 'IPv6' : 'IPv4',
    endpoints: [{ addresses: [ep.ip], conditions: { ready: true }, nodeName: node, targetRef: { kind: 'Pod', namespace, name: podName, uid: pod.metadata?.uid ?? '' } }],
    ports,
  };
}

/** The part of a slice roam decides: what is compared before writing. */
const decided = (s: V1EndpointSlice) => JSON.stringify({ labels: s.metadata?.labels, addressType: s.addressType, endpoints: s.endpoints, ports: s.ports ?? [] });

export class PodEndpoints {
  private pods: Watcher<V1Pod> | undefined;
  private slices: Watcher<V1EndpointSlice> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly rounds = new Rounds(() => this.once());
  /** the last problem said per pod, so that a resync does not say it again */
  private readonly said = new Map<string, string>();

  constructor(private readonly k: KubeClient, private readonly d: PodEndpointsDeps) {}

  start(): void {
    const again = () => void this.sync();
    const warn = (reason: string) => this.d.events.warn(`kubernetes: ${reason}; retrying`);
    this.pods = this.k.watchPods(this.d.node, { changed: again, deleted: again, error: warn, reconnected: again });
    this.slices = this.k.watchEndpointSlices(`${LABELS.managedBy}=${SLICE_MANAGER},${LABELS.node}=${this.d.node}`, { changed: again, deleted: again, error: warn, reconnected: again });
    void Promise.all([this.pods.synced, this.slices.synced]).then(again);
    this.timer = setInterval(again, this.d.resyncMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.pods?.stop();
    this.slices?.stop();
  }

  sync(): Promise<void> {
    return this.rounds.run();
  }

  private async once(): Promise<void> {
    if (!this.pods || !this.slices) return;
    const wanted = this.wanted();
    for (const ep of this.d.host.pods()) {
      const w = wanted.get(ep.name);
      // Gone, no longer asking, or a new pod of the same name (another sandbox): the interface goes.
      if (w && w.ref.uid === ep.pod.uid && w.state.netns === ep.netns) continue;
      await this.guard(ep.name, async () => {
        await this.d.host.stop(ep.name);
        this.d.events.info(`kubernetes: pod ${ep.pod.namespace}/${ep.pod.name}: overlay address ${ep.ip} taken away`);
      });
    }
    const attached = new Set(this.d.host.pods().map((e) => e.name));
    for (const w of wanted.values()) {
      if (attached.has(w.name)) continue;
      await this.guard(w.name, async () => {
        const ep = await this.d.host.attachPod({ name: w.name, pod: w.ref, netns: w.state.netns, pid: w.state.pid, startTime: w.state.startTime });
        this.d.events.info(`kubernetes: pod ${w.ref.namespace}/${w.ref.name}: overlay address ${ep.ip} on ${w.state.netns}`);
      });
    }
    await this.writeSlices(wanted);
  }

  /** The pods of this node that should have an interface, with where their namespace is. */
  private wanted(): Map<string, Wanted> {
    const out = new Map<string, Wanted>();
    for (const pod of this.pods!.list()) {
      if (!wantsMobileIp(pod)) continue;
      const ref: PodRef = { namespace: pod.metadata?.namespace ?? '', name: pod.metadata?.name ?? '', uid: pod.metadata?.uid ?? '' };
      const name = podEndpointName(ref.namespace, ref.name);
      const id = runningContainerId(pod);
      if (!id) continue;
      try {
        out.set(name, { name, pod, ref, state: readRuntimeState(this.d.runtimeRoot, id) });
        this.said.delete(name);
      } catch (err) {
        this.sayOnce(name, `pod ${ref.namespace}/${ref.name}: ${describeError(err)}`);
      }
    }
    return out;
  }

  private async writeSlices(wanted: Map<string, Wanted>): Promise<void> {
    const mine = new Map(this.slices!.list().map((s) => [s.metadata?.labels?.[LABELS.endpoint] ?? '', s]));
    for (const ep of this.d.host.pods()) {
      const w = wanted.get(ep.name);
      if (!w) continue;
      const slice = sliceFor(this.d.node, ep, w.pod);
      const current = mine.get(ep.name);
      mine.delete(ep.name);
      if (current && decided(current) === decided(slice)) continue;
      await this.guard(ep.name, () => (current
        ? this.k.replaceEndpointSlice({ ...slice, metadata: { ...current.metadata, ...slice.metadata, resourceVersion: current.metadata?.resourceVersion } })
        : this.k.createEndpointSlice(slice)));
    }
    for (const [name, s] of mine) await this.guard(name, () => this.k.deleteEndpointSlice(s.metadata?.namespace ?? '', s.metadata?.name ?? ''));
  }

  /** A lost race or an object gone meanwhile waits for the next round (the watches start one); anything else is said, once. */
  private async guard(name: string, work: () => Promise<unknown>): Promise<void> {
    try {
      await work();
    } catch (err) {
      if (isConflict(err) || isNotFound(err)) return;
      this.sayOnce(name, `pod endpoint ${name}: ${describeError(err)}`);
    }
  }

  private sayOnce(key: string, message: string): void {
    if (this.said.get(key) === message) return;
    this.said.set(key, message);
    this.d.events.warn(`kubernetes: ${message}`);
  }
}
