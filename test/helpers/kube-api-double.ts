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
 *  - faults on demand: every watch dropped, history compacted, a
 *    concurrent writer racing the next update, the server away for a while.
 * Cluster-scoped resources only (all roam uses).
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { inNetns } from '../../src/sys/netns/netns.js';

export interface StoredObject {
  apiVersion?: string;
  kind?: string;
  metadata: { name: string; resourceVersion?: string; generation?: number; uid?: string; creationTimestamp?: string; annotations?: Record<string, string>; [k: string]: unknown };
  spec?: unknown;
  status?: unknown;
  [k: string]: unknown;
}

interface Collection {
  path: string;
  apiVersion: string;
  kind: string;
  statusSubresource: boolean;
  objects: Map<string, StoredObject>;
}

interface WatchEvent { rv: number; collection: string; type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: StoredObject }

const COLLECTIONS: Omit<Collection, 'objects'>[] = [
  { path: '/api/v1/nodes', apiVersion: 'v1', kind: 'Node', statusSubresource: true },
  { path: '/apis/roam.dev/v1alpha1/migrations', apiVersion: 'roam.dev/v1alpha1', kind: 'Migration', statusSubresource: true },
  { path: '/apis/roam.dev/v1alpha1/roamendpoints', apiVersion: 'roam.dev/v1alpha1', kind: 'RoamEndpoint', statusSubresource: true },
];

export class KubeApiDouble {
  private readonly collections = new Map<string, Collection>();
  private rv = 100;
  private history: WatchEvent[] = [];
  /** watches from before this resourceVersion get 410 Gone */
  private oldestRv = 100;
  private readonly watches = new Set<{ collection: string; res: ServerResponse; from: number }>();
  private server: Server | undefined;
  private port = 0;
  private netns: string | undefined;
  private racers = new Map<string, number>();
  /** every request, "METHOD path?query" with the status answered: what the agent asked */
  readonly requests: { method: string; url: string; status: number }[] = [];
  /** watches answered with 410 Gone (an ERROR event on a 200 stream, as the API server does) */
  goneSent = 0;

  constructor() {
    for (const c of COLLECTIONS) this.collections.set(c.path, { ...c, objects: new Map() });
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

  /** The next update of `path`'s object `name` loses a race: another writer changes it first (409 for the caller). */
  raceNextUpdate(path: string, name: string, times = 1): void {
    this.racers.set(`${path}/${name}`, times);
  }

  /** Puts an object as an outside writer would (kubectl, the kubelet). */
  put(path: string, obj: StoredObject): StoredObject {
    const c = this.collection(path);
    const old = c.objects.get(obj.metadata.name);
    const stored = this.store(c, { ...structuredClone(obj), apiVersion: c.apiVersion, kind: c.kind }, old);
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
    return this.history.filter((e) => e.collection === path && e.object.metadata.name === name && e.type !== 'DELETED').map((e) => structuredClone(e.object));
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
    c.objects.set(obj.metadata.name, obj);
    this.emit(c, old ? 'MODIFIED' : 'ADDED', obj);
    return obj;
  }

  private emit(c: Collection, type: WatchEvent['type'], object: StoredObject): void {
    const ev: WatchEvent = { rv: Number(object.metadata.resourceVersion), collection: c.path, type, object: structuredClone(object) };
    this.history.push(ev);
    for (const w of this.watches) if (w.collection === c.path && ev.rv > w.from) w.res.write(`${JSON.stringify({ type, object: ev.object })}\n`);
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
      const { collection, name, sub } = this.route(url.pathname);
      if (!collection) return status(404, 'NotFound', `the server could not find the requested resource (${url.pathname})`);
      const c = collection;
      if (req.method === 'GET' && !name && url.searchParams.get('watch') === 'true') return this.watch(c, url, req, res);
      if (req.method === 'GET' && !name) {
        return answer(200, { apiVersion: c.apiVersion, kind: `${c.kind}List`, metadata: { resourceVersion: String(this.rv) }, items: [...c.objects.values()] });
      }
      const current = name ? c.objects.get(name) : undefined;
      if (req.method === 'GET') return current ? answer(200, current) : status(404, 'NotFound', `${c.kind} "${name}" not found`);
      if (req.method === 'POST' && !name) {
        const obj = body as StoredObject;
        if (!obj?.metadata?.name) return status(422, 'Invalid', 'metadata.name: Required value');
        if (c.objects.has(obj.metadata.name)) return status(409, 'AlreadyExists', `${c.kind} "${obj.metadata.name}" already exists`);
        const fresh: StoredObject = { ...obj, apiVersion: c.apiVersion, kind: c.kind, metadata: { ...obj.metadata } };
        if (c.statusSubresource) delete fresh.status;
        return answer(201, this.store(c, fresh, undefined));
      }
      if (req.method === 'PUT' && name) {
        if (!current) return status(404, 'NotFound', `${c.kind} "${name}" not found`);
        this.runRacer(c, name);
        const latest = c.objects.get(name)!;
        const obj = body as StoredObject;
        const rv = obj?.metadata?.resourceVersion;
        if (!rv && c.path !== '/api/v1/nodes') return status(422, 'Invalid', 'metadata.resourceVersion: Invalid value: 0x0: must be specified for an update');
        if (rv && rv !== latest.metadata.resourceVersion) {
          return status(409, 'Conflict', `Operation cannot be fulfilled on ${c.kind.toLowerCase()}s "${name}": the object has been modified; please apply your changes to the latest version and try again`);
        }
        let next: StoredObject;
        if (sub === 'status') {
          next = { ...latest, status: obj.status };
        } else {
          next = { ...obj, apiVersion: c.apiVersion, kind: c.kind, metadata: { ...obj.metadata, name } };
          if (c.statusSubresource) {
            if (latest.status !== undefined) next.status = latest.status;
            else delete next.status;
          }
        }
        return answer(200, this.store(c, next, latest));
      }
      if (req.method === 'DELETE' && name) {
        if (!current) return status(404, 'NotFound', `${c.kind} "${name}" not found`);
        const pre = (body as { preconditions?: { resourceVersion?: string } } | undefined)?.preconditions?.resourceVersion;
        if (pre && pre !== current.metadata.resourceVersion) {
          return status(409, 'Conflict', `Operation cannot be fulfilled on ${c.kind.toLowerCase()}s "${name}": Precondition failed: ResourceVersion in precondition: ${pre}, ResourceVersion in object meta: ${current.metadata.resourceVersion}`);
        }
        this.remove(c.path, name);
        return answer(200, { kind: 'Status', apiVersion: 'v1', status: 'Success', details: { name, kind: c.kind.toLowerCase() } });
      }
      return status(405, 'MethodNotAllowed', `${req.method} is not supported here`);
    } catch (err) {
      return status(400, 'BadRequest', (err as Error).message);
    }
  }

  private runRacer(c: Collection, name: string): void {
    const key = `${c.path}/${name}`;
    const left = this.racers.get(key) ?? 0;
    if (left <= 0) return;
    this.racers.set(key, left - 1);
    const obj = c.objects.get(name)!;
    this.store(c, { ...structuredClone(obj), metadata: { ...obj.metadata, annotations: { ...obj.metadata.annotations, 'double/racer': String(this.rv) } } }, obj);
  }

  private route(path: string): { collection: Collection | undefined; name?: string; sub?: string } {
    for (const c of this.collections.values()) {
      if (path === c.path) return { collection: c };
      if (path.startsWith(`${c.path}/`)) {
        const [name, sub] = path.slice(c.path.length + 1).split('/');
        return { collection: c, name: decodeURIComponent(name!), ...(sub ? { sub } : {}) };
      }
    }
    return { collection: undefined };
  }

  private watch(c: Collection, url: URL, req: IncomingMessage, res: ServerResponse): void {
    const asked = url.searchParams.get('resourceVersion') ?? '';
    this.requests.push({ method: 'GET', url: req.url ?? '', status: 200 });
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
    // The API server answers a watch at once, events or not; the client waits for these headers.
    res.flushHeaders();
    const line = (type: string, object: unknown) => res.write(`${JSON.stringify({ type, object })}\n`);
    if (asked === '' || asked === '0') {
      // "any version": the current state as ADDED events, then the changes.
      for (const o of c.objects.values()) line('ADDED', o);
    } else if (Number(asked) < this.oldestRv) {
      this.goneSent++;
      line('ERROR', { kind: 'Status', apiVersion: 'v1', status: 'Failure', reason: 'Expired', code: 410, message: `too old resource version: ${asked} (${this.oldestRv})` });
      res.end();
      return;
    } else {
      for (const ev of this.history) if (ev.collection === c.path && ev.rv > Number(asked)) line(ev.type, ev.object);
    }
    const w = { collection: c.path, res, from: asked === '' || asked === '0' ? this.rv : Number(asked) };
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
