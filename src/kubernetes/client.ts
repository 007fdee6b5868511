/**
 * The agent's one door to the API server (@kubernetes/client-node): the
 * calls its loops make, each failure named by operation and object, and
 * watches that keep themselves going. Every verb here is listed in
 * API_PERMISSIONS, which the ClusterRole in deploy/kubernetes must grant
 * (a test holds the two together).
 */
import {
  ApiException, CertificatesV1Api, CoreV1Api, CoreV1Event, CustomObjectsApi, DiscoveryV1Api, KubeConfig, ListWatch, Watch,
  type KubernetesObject, type V1CertificateSigningRequest, type V1EndpointSlice, type V1Node, type V1Pod, type V1Secret,
} from '@kubernetes/client-node';
import { API_VERSION, GROUP, type CustomResourceKind } from './resources.js';

/** RBAC rules: [apiGroup, resource, verbs, resourceNames (all when absent)]. */
export type Permissions = readonly (readonly [string, string, readonly string[], (readonly string[])?])[];

/** What the agent does with the API, as RBAC rules (its ClusterRole). */
export const API_PERMISSIONS: Permissions = [
  ['', 'nodes', ['get', 'list', 'watch', 'update']],
  ['', 'pods', ['get', 'list', 'watch']],
  ['', 'events', ['create']],
  ['discovery.k8s.io', 'endpointslices', ['get', 'list', 'watch', 'create', 'update', 'delete']],
  [GROUP, 'migrations', ['get', 'list', 'watch']],
  [GROUP, 'migrations/status', ['get', 'update']],
  [GROUP, 'roamendpoints', ['get', 'list', 'watch', 'create', 'update', 'delete']],
  [GROUP, 'roamendpoints/status', ['get', 'update']],
  // its own peer certificate (kubernetes/peer-certificate.ts)
  ['certificates.k8s.io', 'certificatesigningrequests', ['create', 'get']],
];

/** The signer's name in CertificateSigningRequests for agents' peer certificates. */
export const PEER_SIGNER_NAME = 'roam.dev/peer';

/** What the peer signer does cluster-wide (its ClusterRole): reads requests and Nodes, approves and signs for its signer name only. */
export const SIGNER_PERMISSIONS: Permissions = [
  ['', 'nodes', ['get', 'list', 'watch']],
  ['certificates.k8s.io', 'certificatesigningrequests', ['get', 'list', 'watch']],
  ['certificates.k8s.io', 'certificatesigningrequests/approval', ['update']],
  ['certificates.k8s.io', 'certificatesigningrequests/status', ['update']],
  ['certificates.k8s.io', 'signers', ['approve', 'sign'], [PEER_SIGNER_NAME]],
];

/** What the peer signer does in its own namespace (its Role): keeps its CA in a Secret. */
export const SIGNER_NAMESPACE_PERMISSIONS: Permissions = [
  ['', 'secrets', ['get', 'create']],
];

/** A refused or failed call, with the HTTP status the API server gave (0: it was not reached). */
export class KubernetesError extends Error {
  constructor(readonly op: string, readonly target: string, readonly status: number, reason: string, options?: { cause?: unknown }) {
    super(`kubernetes ${op} ${target}: ${status ? `${status} ` : ''}${reason}`, options);
    this.name = 'KubernetesError';
  }
}

export const isConflict = (err: unknown): boolean => err instanceof KubernetesError && err.status === 409;
export const isNotFound = (err: unknown): boolean => err instanceof KubernetesError && err.status === 404;

function reasonOf(err: unknown): { status: number; reason: string } {
  if (err instanceof ApiException) {
    const body = typeof err.body === 'string' ? safeJson(err.body) : err.body;
    const message = body && typeof body === 'object' && 'message' in body ? String((body as { message: unknown }).message) : String(err.body).slice(0, 200);
    return { status: err.code, reason: message };
  }
  const e = err as NodeJS.ErrnoException;
  return { status: 0, reason: e.code ?? e.message ?? String(err) };
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

async function call<T>(op: string, target: string, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    const { status, reason } = reasonOf(err);
    throw new KubernetesError(op, target, status, reason, { cause: err });
  }
}

/** A list-and-watch that restarts itself after an error, and says so. */
export interface Watcher<T> {
  list(): T[];
  get(name: string, namespace?: string): T | undefined;
  /** resolves once the first list has arrived */
  synced: Promise<void>;
  stop(): void;
}

export interface WatchHandlers<T> {
  /** an object arrived or changed (also for every object of each re-list) */
  changed(obj: T): void;
  deleted(obj: T): void;
  /** the watch broke and will be restarted */
  error(reason: string): void;
  /** it is watching again after a break: writes that failed meanwhile may be done now */
  reconnected?(): void;
}

export class KubeClient {
  private readonly core: CoreV1Api;
  private readonly custom: CustomObjectsApi;
  private readonly discovery: DiscoveryV1Api;
  private readonly certificates: CertificatesV1Api;

  constructor(private readonly kc: KubeConfig, private readonly restartMs = 1000) {
    this.core = kc.makeApiClient(CoreV1Api);
    this.certificates = kc.makeApiClient(CertificatesV1Api);
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.discovery = kc.makeApiClient(DiscoveryV1Api);
  }

  /** In-cluster (the pod's service account) unless a kubeconfig file is named. */
  static connect(kubeconfig: string | undefined): KubeClient {
    const kc = new KubeConfig();
    if (kubeconfig) kc.loadFromFile(kubeconfig);
    else kc.loadFromCluster();
    return new KubeClient(kc);
  }

  /** The API server at `server`, without credentials: for the in-process API double of the tests. */
  static forServer(server: string, restartMs?: number): KubeClient {
    const kc = new KubeConfig();
    kc.loadFromOptions({
      // client-node refuses plain http unless certificate checks are off; over http there are none to make.
      clusters: [{ name: 'c', server, skipTLSVerify: server.startsWith('http:') }],
      users: [{ name: 'u' }],
      contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
      currentContext: 'x',
    });
    return new KubeClient(kc, restartMs);
  }

  readNode(name: string): Promise<V1Node> {
    return call('get', `node ${name}`, () => this.core.readNode({ name }));
  }

  /** A write conditioned on the node's resourceVersion: 409 if it changed meanwhile. */
  replaceNode(node: V1Node): Promise<V1Node> {
    const name = node.metadata?.name ?? '';
    return call('update', `node ${name}`, () => this.core.replaceNode({ name, body: node }));
  }

  async listNodes(): Promise<V1Node[]> {
    return (await call('list', 'nodes', () => this.core.listNode())).items;
  }

  watchNodes(handlers: WatchHandlers<V1Node>): Watcher<V1Node> {
    return this.watch('/api/v1/nodes', () => this.core.listNode(), handlers);
  }

  /** The pods the kubelet of `node` runs, all namespaces. */
  watchPods(node: string, handlers: WatchHandlers<V1Pod>): Watcher<V1Pod> {
    const fieldSelector = `spec.nodeName=${node}`;
    return this.watch('/api/v1/pods', () => this.core.listPodForAllNamespaces({ fieldSelector }), handlers, { fieldSelector });
  }

  /** The EndpointSlices with these labels (`k=v,...`), all namespaces. */
  watchEndpointSlices(labelSelector: string, handlers: WatchHandlers<V1EndpointSlice>): Watcher<V1EndpointSlice> {
    return this.watch('/apis/discovery.k8s.io/v1/endpointslices', () => this.discovery.listEndpointSliceForAllNamespaces({ labelSelector }), handlers, { labelSelector });
  }

  createEndpointSlice(slice: V1EndpointSlice): Promise<V1EndpointSlice> {
    const namespace = slice.metadata?.namespace ?? '';
    return call('create', `endpointslice ${namespace}/${slice.metadata?.name ?? ''}`, () => this.discovery.createNamespacedEndpointSlice({ namespace, body: slice }));
  }

  /** 409 if its resourceVersion is stale. */
  replaceEndpointSlice(slice: V1EndpointSlice): Promise<V1EndpointSlice> {
    const namespace = slice.metadata?.namespace ?? '';
    const name = slice.metadata?.name ?? '';
    return call('update', `endpointslice ${namespace}/${name}`, () => this.discovery.replaceNamespacedEndpointSlice({ namespace, name, body: slice }));
  }

  deleteEndpointSlice(namespace: string, name: string): Promise<void> {
    return call('delete', `endpointslice ${namespace}/${name}`, async () => {
      await this.discovery.deleteNamespacedEndpointSlice({ namespace, name });
    });
  }

  createEvent(event: CoreV1Event): Promise<CoreV1Event> {
    const namespace = event.metadata.namespace ?? '';
    return call('create', `event ${namespace}/${event.metadata.name ?? ''}`, () => this.core.createNamespacedEvent({ namespace, body: event }));
  }

  createCertificateRequest(csr: V1CertificateSigningRequest): Promise<V1CertificateSigningRequest> {
    return call('create', `certificatesigningrequest ${csr.metadata?.name ?? ''}`, () => this.certificates.createCertificateSigningRequest({ body: csr }));
  }

  readCertificateRequest(name: string): Promise<V1CertificateSigningRequest> {
    return call('get', `certificatesigningrequest ${name}`, () => this.certificates.readCertificateSigningRequest({ name }));
  }

  /** The requests for `signerName`. */
  watchCertificateRequests(signerName: string, handlers: WatchHandlers<V1CertificateSigningRequest>): Watcher<V1CertificateSigningRequest> {
    const fieldSelector = `spec.signerName=${signerName}`;
    return this.watch('/apis/certificates.k8s.io/v1/certificatesigningrequests', () => this.certificates.listCertificateSigningRequest({ fieldSelector }), handlers, { fieldSelector });
  }

  /** Writes its Approved or Denied condition; 409 if its resourceVersion is stale. */
  replaceCertificateApproval(csr: V1CertificateSigningRequest): Promise<V1CertificateSigningRequest> {
    const name = csr.metadata?.name ?? '';
    return call('update approval of', `certificatesigningrequest ${name}`, () => this.certificates.replaceCertificateSigningRequestApproval({ name, body: csr }));
  }

  /** Writes the issued certificate (or a Failed condition); 409 if its resourceVersion is stale. */
  replaceCertificateStatus(csr: V1CertificateSigningRequest): Promise<V1CertificateSigningRequest> {
    const name = csr.metadata?.name ?? '';
    return call('update status of', `certificatesigningrequest ${name}`, () => this.certificates.replaceCertificateSigningRequestStatus({ name, body: csr }));
  }

  readSecret(namespace: string, name: string): Promise<V1Secret> {
    return call('get', `secret ${namespace}/${name}`, () => this.core.readNamespacedSecret({ namespace, name }));
  }

  createSecret(secret: V1Secret): Promise<V1Secret> {
    const namespace = secret.metadata?.namespace ?? '';
    return call('create', `secret ${namespace}/${secret.metadata?.name ?? ''}`, () => this.core.createNamespacedSecret({ namespace, body: secret }));
  }

  getCustom<T>(k: CustomResourceKind, name: string): Promise<T> {
    return call('get', `${k.singular} ${name}`, () => this.custom.getClusterCustomObject({ group: GROUP, version: API_VERSION, plural: k.plural, name }) as Promise<T>);
  }

  createCustom<T extends KubernetesObject>(k: CustomResourceKind, body: T): Promise<T> {
    return call('create', `${k.singular} ${body.metadata?.name ?? ''}`, () => this.custom.createClusterCustomObject({ group: GROUP, version: API_VERSION, plural: k.plural, body }) as Promise<T>);
  }

  /** Replaces spec and metadata (the status is the status subresource's); 409 if its resourceVersion is stale. */
  replaceCustom<T extends KubernetesObject>(k: CustomResourceKind, body: T): Promise<T> {
    const name = body.metadata?.name ?? '';
    return call('update', `${k.singular} ${name}`, () => this.custom.replaceClusterCustomObject({ group: GROUP, version: API_VERSION, plural: k.plural, name, body }) as Promise<T>);
  }

  /** Replaces the status only; 409 if its resourceVersion is stale. */
  replaceCustomStatus<T extends KubernetesObject>(k: CustomResourceKind, body: T): Promise<T> {
    const name = body.metadata?.name ?? '';
    return call('update status of', `${k.singular} ${name}`, () => this.custom.replaceClusterCustomObjectStatus({ group: GROUP, version: API_VERSION, plural: k.plural, name, body }) as Promise<T>);
  }

  /** Deletes it if it is still at `resourceVersion` (409 otherwise). */
  deleteCustom(k: CustomResourceKind, name: string, resourceVersion: string): Promise<void> {
    return call('delete', `${k.singular} ${name}`, async () => {
      await this.custom.deleteClusterCustomObject({ group: GROUP, version: API_VERSION, plural: k.plural, name, body: { preconditions: { resourceVersion } } });
    });
  }

  watchCustom<T extends KubernetesObject>(k: CustomResourceKind, handlers: WatchHandlers<T>): Watcher<T> {
    const list = () => this.custom.listClusterCustomObject({ group: GROUP, version: API_VERSION, plural: k.plural }) as Promise<{ items: T[]; metadata?: { resourceVersion?: string } }>;
    return this.watch(`/apis/${GROUP}/${API_VERSION}/${k.plural}`, list as never, handlers);
  }

  /**
   * client-node's informer lists, then watches from the list's
   * resourceVersion, re-watches when the server ends a watch and re-lists
   * on 410 Gone; any other failure (the API server unreachable, a 5xx) ends
   * it, so it is started again here after `restartMs`.
   */
  private watch<T extends KubernetesObject>(path: string, list: () => Promise<{ items: T[] }>, h: WatchHandlers<T>, selectors: { labelSelector?: string; fieldSelector?: string } = {}): Watcher<T> {
    // The watch must ask for what the list asked for; makeInformer passes no field selector, so the ListWatch is made here.
    const informer = new ListWatch<T>(path, new Watch(this.kc), list as never, false, selectors.labelSelector, selectors.fieldSelector);
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let markSynced!: () => void;
    const synced = new Promise<void>((resolve) => (markSynced = resolve));
    informer.on('add', (o) => h.changed(o));
    informer.on('update', (o) => h.changed(o));
    informer.on('delete', (o) => h.deleted(o));
    // The informer reports a failed list through 'error' and still resolves start(): a round is good only without one.
    let failures = 0;
    let broken = false;
    const begin = () => {
      if (stopped) return;
      const before = failures;
      informer.start().then(() => {
        if (failures !== before) return;
        markSynced();
        if (broken) h.reconnected?.();
        broken = false;
      }, (err: unknown) => restart(err));
    };
    const restart = (err: unknown) => {
      failures++;
      broken = true;
      if (stopped) return;
      h.error(`watch ${path}: ${reasonOf(err).reason}`);
      clearTimeout(timer);
      timer = setTimeout(begin, this.restartMs);
      timer.unref();
    };
    informer.on('error', restart);
    begin();
    return {
      list: () => [...informer.list()],
      get: (name, namespace) => informer.get(name, namespace),
      synced,
      stop: () => {
        stopped = true;
        clearTimeout(timer);
        void informer.stop();
      },
    };
  }
}
