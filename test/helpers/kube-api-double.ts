/**
 * An in-process stand-in for the Kubernetes API server, for the agent's
 * Kubernetes loops: no real cluster runs on these machines. It speaks the
 * part of the protocol @kubernetes/client-node uses, as the API server does:
 *  - lists carry the collection's resourceVersion, and watches stream the
 *    changes after the one they are given, as JSON lines; one older than
 *    what the server still remembers (compact()) gets a 410 Gone event;
 *  - updates are conditioned on metadata.resourceVersion (409 Conflict if
 *    stale, required for custom resources), creates on the name (409
 *    AlreadyExists); spec changes bump metadata.generation; with a status
 *    subresource, the main resource ignores status and /status ignores
 *    everything else; deletes honour preconditions.resourceVersion;
 *  - namespaced collections (pods, events, EndpointSlices) under
 *    /namespaces/NS/, listed and watched across namespaces too, with the
 *    equality field selectors the agent uses (spec.nodeName,
 *    metadata.name, metadata.namespace) and equality label selectors;
 *  - CertificateSigningRequests as the API server keeps them: the
 *    requester's identity (from its bearer token: username, groups and
 *    extra, such as a service-account token's node) written into the spec
 *    at create, the spec immutable, approval only through /approval, the
 *    certificate only through /status, only once approved, and only once;
 *  - faults on demand: every watch dropped, history compacted, a
 *    concurrent writer racing the next update, the server away for a while.
 * The test-facing methods name a collection by its path across namespaces
 * (`/api/v1/pods`) and a namespaced object as `namespace/name`.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inNetns } from '../../src/sys/netns/netns.js';

export interface StoredObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; namespace?: string; resourceVersion?: string; generation?: number; uid?: string; creationTimestamp?: string; annotations?: Record<string, string>; labels?: Record<string, string>; [k: string]: unknown };
  spec?: unknown;
  status?: unknown;
  [k: string]: unknown;
}

interface Collection {
  /** the group-version's root, e.g. /api/v1 */
  base: string;
  plural: string;
  /** base/plural: the collection across namespaces */
  path: string;
  namespaced: boolean;
  apiVersion: string;
  kind: string;
  statusSubresource: boolean;
  /** by name, or by namespace/name */
  objects: Map<string, StoredObject>;
}

interface WatchEvent { rv: number; collection: string; type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: StoredObject }

const COLLECTIONS: Omit<Collection, 'objects' | 'path'>[] = [
  { base: '/api/v1', plural: 'nodes', namespaced: false, apiVersion: 'v1', kind: 'Node', statusSubresource: true },
  { base: '/api/v1', plural: 'pods', namespaced: true, apiVersion: 'v1', kind: 'Pod', statusSubresource: true },
  { base: '/api/v1', plural: 'events', namespaced: true, apiVersion: 'v1', kind: 'Event', statusSubresource: false },
  { base: '/apis/discovery.k8s.io/v1', plural: 'endpointslices', namespaced: true, apiVersion: 'discovery.k8s.io/v1', kind: 'EndpointSlice', statusSubresource: false },
  { base: '/apis/roam.dev/v1alpha1', plural: 'migrations', namespaced: false, apiVersion: 'roam.dev/v1alpha1', kind: 'Migration', statusSubresource: true },
  { base: '/apis/roam.dev/v1alpha1', plural: 'roamendpoints', namespaced: false, apiVersion: 'roam.dev/v1alpha1', kind: 'RoamEndpoint', statusSubresource: true },
  { base: '/apis/certificates.k8s.io/v1', plural: 'certificatesigningrequests', namespaced: false, apiVersion: 'certificates.k8s.io/v1', kind: 'CertificateSigningRequest', statusSubresource: true },
  { base: '/api/v1', plural: 'secrets', namespaced: true, apiVersion: 'v1', kind: 'Secret', statusSubresource: false },
];

/** Who a bearer token authenticates, as the API server's authenticators say it. */
export interface UserInfo {
  username: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

const CSRS = '/apis/certificates.k8s.io/v1/certificatesigningrequests';
type CsrStatus = { conditions?: { type: string }[]; certificate?: string } | undefined;

const keyOf = (o: StoredObject): string => (o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name);

/** Which objects a list or watch asked for: its namespace (from the path) and its selectors. */
type Filter = (o: StoredObject) => boolean;

function selectorFilter(namespace: string | undefined, url: URL): Filter {
  const fields = (url.searchParams.get('fieldSelector') ?? '').split(',').filter(Boolean).map((f) => f.split('='));
  const labels = (url.searchParams.get('labelSelector') ?? '').split(',').filter(Boolean).map((l) => l.split('='));
  for (const [k, v] of [...fields, ...labels]) {
    if (v === undefined || k!.endsWith('!')) throw new Error(`the API double takes only equality selectors, not ${k}`);
  }
  const field = (o: StoredObject, path: string): unknown => path.split('.').reduce<unknown>((v, k) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined), o);
  return (o) => (namespace === undefined || o.metadata.namespace === namespace)
    && fields.every(([k, v]) => String(field(o, k!) ?? '') === v)
    && labels.every(([k, v]) => o.metadata.labels?.[k!] === v);
}

export class KubeApiDouble {
  private readonly collections = new Map<string, Collection>();
  private rv = 100;
  private history: WatchEvent[] = [];
  /** watches from before this resourceVersion get 410 Gone */
  private oldestRv = 100;
  private readonly watches = new Set<{ collection: string; res: ServerResponse; from: number; filter: Filter }>();
  private server: Server | undefined;
  private port = 0;
  private netns: string | undefined;
  private racers = new Map<string, number>();
  /** every request, "METHOD path?query" with the status answered: what the agent asked */
  readonly requests: { method: string; url: string; status: number }[] = [];
  /** watches answered with 410 Gone (an ERROR event on a 200 stream, as the API server does) */
  goneSent = 0;
  private readonly users = new Map<string, UserInfo>();

  constructor() {
    for (const c of COLLECTIONS) this.collections.set(`${c.base}/${c.plural}`, { ...c, path: `${c.base}/${c.plural}`, objects: new Map() });
  }

  /** Listens on every address of the calling namespace, or of `netns` (where the agents under test are). */
  async start(opts: { port?: number; netns?: string } = {}): Promise<string> {
    this.netns = opts.netns ?? this.netns;
    const server = createServer((req, res) => void this.handle(req, res));
    // listen() without a host creates the socket at once, so inside inNetns it is created in that namespace.
    const listen = () => server.listen(opts.port ?? this.port);
    if (this.netns) inNetns(this.netns, listen);
    else listen();
    await new Promise<void>((resolve, reject) => {
      server.once('listening', resolve);
      server.once('error', reject);
    });
    this.port = (server.address() as AddressInfo).port;
    this.server = server;
    return `http://127.0.0.1:${this.port}`;
  }

  get listenPort(): number {
    return this.port;
  }

  /** Closes the server and every connection: the API server is away until start() again. */
  async stop(): Promise<void> {
    this.dropWatches();
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise((resolve) => s.close(resolve));
  }

  /** Ends every open watch, as an API server does when its watch timeout passes or it restarts. */
  dropWatches(): void {
    for (const w of this.watches) w.res.end();
    this.watches.clear();
  }

  /** Forgets the event history: a watch resumed from any earlier resourceVersion gets 410 Gone and must re-list. */
  compact(): void {
    this.history = [];
    this.oldestRv = this.rv;
  }

  /** Requests bearing `token` are `user`'s (others are system:anonymous). */
  addUser(token: string, user: UserInfo): void {
    this.users.set(token, user);
  }

  /** The next update of `path`'s object `name` loses a race: another writer changes it first (409 for the caller). */
  raceNextUpdate(path: string, name: string, times = 1): void {
    this.racers.set(`${path}/${name}`, times);
  }

  /** Puts an object as an outside writer would (kubectl, the kubelet). */
  put(path: string, obj: StoredObject): StoredObject {
    const c = this.collection(path);
    if (c.namespaced !== Boolean(obj.metadata.namespace)) throw new Error(`${c.kind} ${obj.metadata.name}: ${c.namespaced ? 'needs' : 'takes no'} metadata.namespace`);
    const old = c.objects.get(keyOf(obj));
    // Stored as JSON, as the API server does: what the test reads back is what a client gets (no undefined-valued keys).
    const stored = this.store(c, { ...(JSON.parse(JSON.stringify(obj)) as StoredObject), apiVersion: c.apiVersion, kind: c.kind }, old);
    return structuredClone(stored);
  }

  get(path: string, name: string): StoredObject | undefined {
    const o = this.collection(path).objects.get(name);
    return o ? structuredClone(o) : undefined;
  }

  list(path: string): StoredObject[] {
    return [...this.collection(path).objects.values()].map((o) => structuredClone(o));
  }

  /** Every version of `path`'s object `name` the server stored, oldest first (since the last compact()). */
  versions(path: string, name: string): StoredObject[] {
    return this.history.filter((e) => e.collection === path && keyOf(e.object) === name && e.type !== 'DELETED').map((e) => structuredClone(e.object));
  }

  remove(path: string, name: string): void {
    const c = this.collection(path);
    const old = c.objects.get(name);
    if (!old) return;
    c.objects.delete(name);
    this.emit(c, 'DELETED', { ...old, metadata: { ...old.metadata, resourceVersion: String(++this.rv) } });
  }

  private collection(path: string): Collection {
    const c = this.collections.get(path);
    if (!c) throw new Error(`the API double has no collection ${path}`);
    return c;
  }

  private store(c: Collection, obj: StoredObject, old: StoredObject | undefined): StoredObject {
    const specChanged = !old || JSON.stringify(old.spec) !== JSON.stringify(obj.spec);
    obj.metadata = {
      ...obj.metadata,
      uid: old?.metadata.uid ?? randomUUID(),
      creationTimestamp: old?.metadata.creationTimestamp ?? new Date().toISOString(),
      generation: (old?.metadata.generation ?? 0) + (specChanged ? 1 : 0),
      resourceVersion: String(++this.rv),
    };
    c.objects.set(keyOf(obj), obj);
    this.emit(c, old ? 'MODIFIED' : 'ADDED', obj);
    return obj;
  }

  private emit(c: Collection, type: WatchEvent['type'], object: StoredObject): void {
    const ev: WatchEvent = { rv: Number(object.metadata.resourceVersion), collection: c.path, type, object: structuredClone(object) };
    this.history.push(ev);
    for (const w of this.watches) if (w.collection === c.path && ev.rv > w.from && w.filter(object)) w.res.write(`${JSON.stringify({ type, object: ev.object })}\n`);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://double');
    const answer = (status: number, body: unknown) => {
      this.requests.push({ method: req.method ?? '', url: req.url ?? '', status });
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };
    const status = (code: number, reason: string, message: string) => answer(code, { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason, message, code });
    try {
      const body = await readBody(req);
      const { collection: c, namespace, name, sub } = this.route(url.pathname);
      if (!c) return status(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`);
      if (req.method === 'GET' && !name && url.searchParams.get('watch') === 'true') return this.watch(c, selectorFilter(namespace, url), url, req, res);
      if (req.method === 'GET' && !name) {
        const wanted = selectorFilter(namespace, url);
        return answer(200, { apiVersion: c.apiVersion, kind: `${c.kind}List`, metadata: { resourceVersion: String(this.rv) }, items: [...c.objects.values()].filter(wanted) });
      }
      const key = name && namespace ? `${namespace}/${name}` : name;
      const current = key ? c.objects.get(key) : undefined;
      if (req.method === 'GET') return current ? answer(200, current) : status(404, 'NotFound', `${c.kind} "${name}" not found`);
      if (req.method === 'POST' && !name) {
        const obj = body as StoredObject;
        if (!obj?.metadata?.name) return status(422, 'Invalid', 'metadata.name: Required value');
        if (c.namespaced && !namespace) return status(405, 'MethodNotAllowed', `create a ${c.kind} in a namespace`);
        const fresh: StoredObject = { ...obj, apiVersion: c.apiVersion, kind: c.kind, metadata: { ...obj.metadata, ...(namespace ? { namespace } : {}) } };
        if (c.objects.has(keyOf(fresh))) return status(409, 'AlreadyExists', `${c.kind} "${obj.metadata.name}" already exists`);
        if (c.statusSubresource) delete fresh.status;
        if (c.path === CSRS) fresh.spec = { ...(fresh.spec as object), ...this.userOf(req) };
        return answer(201, this.store(c, fresh, undefined));
      }
      if (req.method === 'PUT' && key) {
        if (!current) return status(404, 'NotFound', `${c.kind} "${name}" not found`);
        this.runRacer(c, key);
        const latest = c.objects.get(key)!;
        const obj = body as StoredObject;
        const rv = obj?.metadata?.resourceVersion;
        if (!rv && c.path !== '/api/v1/nodes') return status(422, 'Invalid', 'metadata.resourceVersion: Invalid value: 0x0: must be specified for an update');
        if (rv && rv !== latest.metadata.resourceVersion) {
          return status(409, 'Conflict', `Operation cannot be fulfilled on ${c.plural} "${name}": the object has been modified; please apply your changes to the latest version and try again`);
        }
        if (c.path === CSRS) {
          const refusal = csrUpdateRefusal(latest, obj, sub);
          if (refusal) return status(422, 'Invalid', `CertificateSigningRequest.certificates.k8s.io "${name}" is invalid: ${refusal}`);
        }
        let next: StoredObject;
        if (sub === 'status' || sub === 'approval') {
          next = { ...latest, status: obj.status };
        } else {
          next = { ...obj, apiVersion: c.apiVersion, kind: c.kind, metadata: { ...obj.metadata, name: name!, ...(namespace ? { namespace } : {}) } };
          if (c.statusSubresource) {
            if (latest.status !== undefined) next.status = latest.status;
            else delete next.status;
          }
        }
        return answer(200, this.store(c, next, latest));
      }
      if (req.method === 'DELETE' && key) {
        if (!current) return status(404, 'NotFound', `${c.kind} "${name}" not found`);
        const pre = (body as { preconditions?: { resourceVersion?: string } } | undefined)?.preconditions?.resourceVersion;
        if (pre && pre !== current.metadata.resourceVersion) {
          return status(409, 'Conflict', `Operation cannot be fulfilled on ${c.plural} "${name}": Precondition failed: ResourceVersion in precondition: ${pre}, ResourceVersion in object meta: ${current.metadata.resourceVersion}`);
        }
        this.remove(c.path, key);
        return answer(200, { kind: 'Status', apiVersion: 'v1', status: 'Success', details: { name, kind: c.plural } });
      }
      return status(405, 'MethodNotAllowed', `${req.method} is not supported here`);
    } catch (err) {
      return status(400, 'BadRequest', (err as Error).message);
    }
  }

  private userOf(req: IncomingMessage): { username: string; groups: string[]; extra?: Record<string, string[]>; uid: string } {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const user = token ? this.users.get(token) : undefined;
    return { username: user?.username ?? 'system:anonymous', groups: user?.groups ?? ['system:unauthenticated'], ...(user?.extra ? { extra: user.extra } : {}), uid: randomUUID() };
  }

  private runRacer(c: Collection, key: string): void {
    const racer = `${c.path}/${key}`;
    const left = this.racers.get(racer) ?? 0;
    if (left <= 0) return;
    this.racers.set(racer, left - 1);
    const obj = c.objects.get(key)!;
    this.store(c, { ...structuredClone(obj), metadata: { ...obj.metadata, annotations: { ...obj.metadata.annotations, 'double/racer': String(this.rv) } } }, obj);
  }

  /** base/plural[/name[/sub]], or for a namespaced kind base/namespaces/NS/plural[/name[/sub]] (and base/plural across namespaces). */
  private route(path: string): { collection: Collection | undefined; namespace?: string; name?: string; sub?: string } {
    for (const c of this.collections.values()) {
      if (path === c.path) return { collection: c };
      let rest: string | undefined;
      let namespace: string | undefined;
      if (c.namespaced) {
        const m = new RegExp(`^${c.base}/namespaces/([^/]+)/${c.plural}(/.*)?$`).exec(path);
        if (!m) continue;
        namespace = decodeURIComponent(m[1]!);
        rest = m[2];
      } else if (path.startsWith(`${c.path}/`)) {
        rest = path.slice(c.path.length);
      } else {
        continue;
      }
      if (!rest) return { collection: c, ...(namespace ? { namespace } : {}) };
      const [name, sub] = rest.slice(1).split('/');
      return { collection: c, ...(namespace ? { namespace } : {}), name: decodeURIComponent(name!), ...(sub ? { sub } : {}) };
    }
    return { collection: undefined };
  }

  private watch(c: Collection, filter: Filter, url: URL, req: IncomingMessage, res: ServerResponse): void {
    const asked = url.searchParams.get('resourceVersion') ?? '';
    this.requests.push({ method: 'GET', url: req.url ?? '', status: 200 });
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    // The API server answers a watch at once, events or not; the client waits for these headers.
    res.flushHeaders();
    const line = (type: string, object: unknown) => res.write(`${JSON.stringify({ type, object })}\n`);
    if (asked === '' || asked === '0') {
      // "any version": the current state as ADDED events, then the changes.
      for (const o of c.objects.values()) if (filter(o)) line('ADDED', o);
    } else if (Number(asked) < this.oldestRv) {
      this.goneSent++;
      line('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: `too old resource version: ${asked} (${this.oldestRv})` });
      res.end();
      return;
    } else {
      for (const ev of this.history) if (ev.collection === c.path && ev.rv > Number(asked) && filter(ev.object)) line(ev.type, ev.object);
    }
    const w = { collection: c.path, res, from: asked === '' || asked === '0' ? this.rv : Number(asked), filter };
    this.watches.add(w);
    req.on('close', () => this.watches.delete(w));
  }
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  if (chunks.length === 0) return undefined;
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : undefined;
}

/** What the API server's validation refuses in an update of a CertificateSigningRequest (its main resource, /approval or /status). */
function csrUpdateRefusal(latest: StoredObject, obj: StoredObject, sub: string | undefined): string | undefined {
  if (obj.spec !== undefined && canonical(obj.spec) !== canonical(latest.spec)) return 'spec: Forbidden: field is immutable';
  const before = latest.status as CsrStatus;
  const after = obj.status as CsrStatus;
  const decisions = (st: CsrStatus) => JSON.stringify((st?.conditions ?? []).filter((c) => c.type === 'Approved' || c.type === 'Denied'));
  if (sub === 'approval') {
    if ((after?.certificate ?? '') !== (before?.certificate ?? '')) return 'status.certificate: Forbidden: updated only through the status subresource';
    const types = new Set((after?.conditions ?? []).map((c) => c.type));
    if (types.has('Approved') && types.has('Denied')) return 'status.conditions: Invalid value: Approved and Denied conditions are mutually exclusive';
    return undefined;
  }
  if (sub === 'status') {
    if (decisions(after) !== decisions(before)) return 'status.conditions: Forbidden: updated only through the approval subresource';
    if (after?.certificate && before?.certificate && after.certificate !== before.certificate) return 'status.certificate: Forbidden: updates may not modify existing certificate content';
    if (after?.certificate && !(before?.conditions ?? []).some((c) => c.type === 'Approved')) return 'status.certificate: Invalid value: certificate may only be set if the request is approved';
  }
  return undefined;
}

/** JSON with every object's keys in order: equal values, equal text, whatever order a client wrote them in. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') return `{${Object.keys(value).sort().filter((k) => (value as Record<string, unknown>)[k] !== undefined).map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(',')}}`;
  return JSON.stringify(value);
}
