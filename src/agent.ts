/**
 * The composition root: builds an agent from its parts and runs it. Tests
 * build agents through here too. No side effects until start().
 */
import { removeStaleHookSockets } from './checkpoint/runc-container.js';
import { chmodSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Server as TlsServer } from 'node:tls';
import { totalmem } from 'node:os';
import { dirname, resolve } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Registry } from 'prom-client';
import { addOpenApi, createApp } from './api/app.js';
import { registerControlRoutes } from './api/control-routes.js';
import { readApiToken, requireBearerToken } from './api/control-exposure.js';
import { PeerClient } from './peer/client.js';
import type { TlsMaterial } from './http/client.js';
import { RoamError } from './errors/roam-error.js';
import { registerPeerIdentity } from './peer/identity.js';
import { registerPeerRoutes } from './peer/routes.js';
import { registerMigrationControlRoutes } from './api/migration-routes.js';
import { registerMigrationPeerRoutes } from './peer/migration-routes.js';
import { MigrationSource } from './migration/source.js';
import { MigrationTarget } from './migration/target.js';
import { removeArrivalLeftovers, resumeSwitchedArrivals } from './migration/target-leftovers.js';
import { EndpointRouter } from './cluster/endpoint-router.js';
import { LocationTable } from './cluster/locations.js';
import { PeerSync } from './cluster/peer-sync.js';
import { claimName, NameClaims } from './cluster/name-claims.js';
import type { AgentConfig } from './config/schema.js';
import { splitHostPort } from './records/formats.js';
import { EndpointManager } from './endpoint/manager.js';
import { EventBus, type ApiRefusal } from './events/bus.js';
import { createAgentMetrics } from './metrics/agent-metrics.js';
import { serveMetrics } from './metrics/server.js';
import { KernelDataplane } from './overlay/kernel-dataplane.js';
import { KubernetesMode } from './kubernetes/kube-mode.js';
import { KubeClient, PEER_SIGNER_NAME } from './kubernetes/client.js';
import { PeerCertificateKeeper } from './kubernetes/peer-certificate.js';
import { OverlayReconciler } from './overlay/reconciler.js';
import { RtnlSession } from './sys/netlink/session.js';
import { liftStaleGates } from './sys/port-gate.js';
import { registerPolicyMetrics } from './metrics/policy-metrics.js';
import { TrafficObserver } from './policy/observer.js';
import { PolicyPlanner } from './policy/planner.js';
import { registerPolicyControlRoutes, registerPolicyPeerRoutes } from './api/policy-routes.js';
import { DrainFlag } from './policy/drain-flag.js';
import { VERSION } from './version.js';

/** A PEM file of the config, read once at start; an unreadable one is a config error naming its field. */
function readPem(field: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new RoamError('CONFIG_INVALID', `${field}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
}

function readTlsMaterial(t: { ca: string; cert: string; key: string }): TlsMaterial {
  return { ca: readPem('tls.ca', t.ca), cert: readPem('tls.cert', t.cert), key: readPem('tls.key', t.key) };
}

/** A container image kept this long after its last use, for a container that comes back. */
const IMAGE_UNUSED_MS = 3600000;

export class Agent {
  readonly events = new EventBus();
  readonly table: LocationTable;
  private session: RtnlSession | undefined;
  private reconciler: OverlayReconciler | undefined;
  private manager: EndpointManager | undefined;
  private sync: PeerSync | undefined;
  private control: FastifyInstance | undefined;
  /** the control API on api.listen, when configured */
  private networkControl: FastifyInstance | undefined;
  private peer: FastifyInstance | undefined;
  private metrics: Server | undefined;
  private registry: Registry | undefined;
  private migrations: { source: MigrationSource; target: MigrationTarget } | undefined;
  private kube: KubernetesMode | undefined;
  private certificates: PeerCertificateKeeper | undefined;
  private housekeeping: NodeJS.Timeout | undefined;
  private peerClient: PeerClient | undefined;
  private planner: PolicyPlanner | undefined;
  private observer: TrafficObserver | undefined;

  constructor(readonly config: Readonly<AgentConfig>) {
    this.table = new LocationTable(config.node, config.underlay.address);
    for (const p of config.peers) this.table.addPeer(p.node, p.address);
  }

  async start(): Promise<void> {
    const c = this.config;
    // Every file the config names is read before the agent touches anything: a missing one leaves nothing half-started.
    if (c.kubernetes?.peerCertificates && c.tls) {
      const pc = c.kubernetes.peerCertificates;
      this.certificates = new PeerCertificateKeeper({
        client: KubeClient.connect(c.kubernetes.kubeconfig), node: c.node, address: c.underlay.address, paths: c.tls, signerName: PEER_SIGNER_NAME,
        expirationSeconds: pc.expirationSeconds, renewAfterSeconds: pc.renewAfterSeconds, timeoutMs: pc.waitSeconds * 1000,
        say: (m) => this.events.info(m), warn: (m) => this.events.warn(m),
      }, () => this.usePeerCertificate());
      await this.certificates.start();
    }
    const tls = c.tls ? readTlsMaterial(c.tls) : undefined;
    const exposure = c.api.listen ? {
      ...splitHostPort(c.api.listen),
      https: c.api.tls ? { cert: readPem('api.tls.cert', c.api.tls.cert), key: readPem('api.tls.key', c.api.tls.key) } : undefined,
      // config/load.ts refuses api.listen without it
      token: readApiToken(c.api.tokenFile ?? ''),
    } : undefined;
    // Metrics subscribe first, so that no event of the start-up is lost.
    this.registry = createAgentMetrics(this.events, {
      node: c.node, version: VERSION,
      peersKnown: () => this.table.peers().length,
      peersReachable: () => this.table.peers().filter((p) => p.reachable).length,
      endpointsLocal: () => this.manager?.records().length ?? 0,
      migrationsInFlight: () => ({ source: this.migrations?.source.inFlight() ?? 0, target: this.migrations?.target.inFlight() ?? 0 }),
      migrationsQueued: () => this.migrations?.source.queuedCount() ?? 0,
    });
    registerPolicyMetrics(this.registry, this.events, () => this.observer && {
      ingress: this.observer.window.endpoints().flatMap((endpoint) => [...this.observer!.window.totalsOf(endpoint)].map(([via, bytes]) => ({ endpoint, via, bytes }))),
      rttMs: this.observer.rttsMs().map(([endpoint, ms]) => ({ endpoint, ms })),
      draining: this.table.node(c.node)?.draining === true,
      preparedAhead: this.migrations?.source.preparedAhead().length ?? 0,
    });
    mkdirSync(c.stateDir, { recursive: true });
    // A node marked for maintenance stays marked across agent restarts, until it is lifted.
    const drain = new DrainFlag(c.stateDir);
    this.table.setDraining(drain.isSet());
    // The table's change is announced to the peers by the next push (or at once, from setDraining below).
    const markDraining = (draining: boolean) => {
      if ((this.table.node(c.node)?.draining === true) === draining) return;
      drain.set(draining);
      this.table.setDraining(draining);
      this.events.info(`node ${c.node} ${draining ? 'is draining: its endpoints leave it' : 'is no longer draining'}`);
    };
    // In Kubernetes mode the peers and this node's range come from the cluster, before anything uses them.
    let range = c.overlay.range;
    if (c.kubernetes) {
      // A cordoned node is one marked for maintenance: the drain policy moves its endpoints off it.
      this.kube = new KubernetesMode({ ...c, kubernetes: c.kubernetes }, this.table, this.events, undefined, (cordoned) => markDraining(cordoned));
      range = await this.kube.join();
    }
    if (!range) throw new RoamError('CONFIG_INVALID', 'overlay.range: required (only a kubernetes agent claims its range from the cluster)');
    this.session = RtnlSession.open();
    const session = this.session;
    const dataplane = new KernelDataplane(session, {
      bridge: c.devices.bridge, vxlan: c.devices.vxlan, vni: c.vni, vxlanPort: c.vxlanPort,
      underlayAddress: c.underlay.address, underlayInterface: c.underlay.interface, mtu: c.overlay.mtu,
      log: (m) => this.events.warn(m),
    });
    const reconciler = new OverlayReconciler(
      dataplane,
      () => ({
        self: c.node,
        peers: this.table.nodeViews().map((n) => ({ node: n.node, vtep: n.address })),
        endpoints: this.table.nodeViews().flatMap((n) => n.endpoints.map((e) => ({ name: e.name, mac: e.mac, node: n.node, generation: e.generation }))),
      }),
      this.events,
    );
    this.reconciler = reconciler;
    const first = await reconciler.start(Math.max(c.syncIntervalMs * 5, 10000));
    for (const e of first.errors) this.events.warn(`initial reconcile: ${e}`);

    // A new endpoint's name is claimed from every node first: no two nodes create the same name at once.
    const names = new NameClaims((name) => this.table.endpoints().find((e) => e.name === name)?.node);
    const manager = new EndpointManager({
      node: c.node, stateDir: c.stateDir, subnet: c.overlay.subnet, range, mtu: c.overlay.mtu,
      session, bridgeIndex: () => reconciler.overlayDevices!.bridgeIndex,
      clusterEndpoints: () => this.table.endpoints().filter((e) => e.node !== c.node),
      claimName: async (name) => {
        const claim = await claimName(name, c.node, names, this.table.peers().map((p) => ({ node: p.node, address: p.address })), this.peerClient!);
        return { release: claim.release, created: () => claim.created(() => this.sync!.publish(2000)) };
      },
      events: this.events,
    });
    this.manager = manager;
    // At start and every ten minutes: container images no endpoint here uses, nor used for an hour, are removed, and
    // so are the gates of page servers that ended while no agent was there to lift them.
    const housekeeping = () => {
      try {
        const removed = manager.containers.images.collect(manager.imagesInUse(), IMAGE_UNUSED_MS);
        if (removed.length > 0) this.events.info(`container images unused here for ${IMAGE_UNUSED_MS / 60000} min removed: ${removed.join(', ')}`);
        const lifted = liftStaleGates();
        if (lifted.length > 0) this.events.info(`gates of page servers that have ended lifted: ports ${lifted.join(', ')}`);
      } catch (err) {
        this.events.warn(`housekeeping: ${(err as Error).message}`);
      }
    };
    housekeeping();
    this.housekeeping = setInterval(housekeeping, 600000);
    this.housekeeping.unref();
    // config/load.ts lets an agent without tls start only when its config says insecurePlaintextPeers.
    if (!tls) this.events.warn(`insecurePlaintextPeers: the peer protocol on port ${c.peerPort} and the page servers are plain and unauthenticated: anyone who reaches them can run processes as root on ${c.node}; keep the underlay private`);
    // CRIU reads the same files itself, from its own working directory.
    const pageTls = c.tls ? { ca: resolve(c.tls.ca), cert: resolve(c.tls.cert), key: resolve(c.tls.key) } : undefined;
    const client = new PeerClient(c.peerPort, 3000, tls);
    this.peerClient = client;
    const sync = new PeerSync(this.table, client, c.syncIntervalMs, this.events, !c.kubernetes);
    this.sync = sync;
    manager.onChange(() => this.table.setLocal(manager.records()));
    this.table.onChange((what) => {
      void reconciler.reconcile();
      if (what !== 'remote') void sync.pushAll();
    });
    await manager.adopt();
    removeArrivalLeftovers(c.stateDir, (m) => this.events.warn(m));
    removeStaleHookSockets();
    manager.startWatching();

    const source = new MigrationSource(c.node, c.stateDir, manager, this.table, client, this.events, {
      address: c.underlay.address, pullShare: c.underlay.pullShare, ...(c.underlay.rateMbit !== undefined ? { rateMbit: c.underlay.rateMbit } : {}),
      ...(pageTls ? { pageTls } : {}),
    }, c.migration.maxConcurrent);
    source.recoverInterrupted();
    // The switch: this node's FDB and the peers' learn the new owner at the same time; both before the unlock.
    const target = new MigrationTarget(manager, c.stateDir, async () => {
      await Promise.all([reconciler.reconcile(), sync.publish(2000)]);
    }, this.events, c.underlay.address, pageTls, {
      idleMs: c.limits.arrivalIdleSeconds * 1000,
      // No endpoint a node of this size runs dumps more than its memory.
      imageBytes: c.limits.imageBytes ?? totalmem() + 1024 ** 3,
      reserveFreeBytes: c.limits.reserveFreeBytes,
    });
    await resumeSwitchedArrivals(c.stateDir, manager, this.events);
    this.migrations = { source, target };
    this.kube?.run(manager, source);
    this.observer = new TrafficObserver('/proc/self/ns/net', { vxlanPort: c.vxlanPort, vxlanDevice: c.devices.vxlan }, (m) => this.events.warn(m));
    this.planner = new PolicyPlanner({
      self: c.node, intervalMs: c.policy.intervalMs, defaultPolicy: c.policy.default, table: this.table, manager, source, observer: this.observer, events: this.events,
      draining: () => this.table.node(c.node)?.draining === true,
    });
    const setDraining = async (draining: boolean) => {
      markDraining(draining);
      await sync.publish(2000);
    };
    const router = new EndpointRouter(c.node, this.table, manager, client, {
      publish: () => sync.publish(2000),
      refresh: (node) => sync.exchangeWith(node),
    });
    this.peer = createApp(tls ? { ...tls, requestCert: true, rejectUnauthorized: true } : undefined, {
      bodyTimeoutMs: c.limits.uploadIdleSeconds * 1000, maxConnections: c.limits.peerConnections,
    });
    // A peer without a certificate the cluster CA signed never gets past the handshake: said, and counted.
    this.peer.server.on('tlsClientError', (err: Error & { code?: string }, socket: { remoteAddress?: string }) => {
      this.events.warn(`peer connection from ${socket.remoteAddress ?? 'unknown'} refused: ${err.code ?? err.message}`);
      this.events.emit('peer.tls-refused', { from: socket.remoteAddress ?? 'unknown', reason: err.code ?? err.message });
    });
    // Who calls: the node its certificate names (undefined without tls, the config's choice). Before every route.
    registerPeerIdentity(this.peer, tls !== undefined, this.events);
    registerPeerRoutes(this.peer, { manager, sync, names, events: this.events });
    registerMigrationPeerRoutes(this.peer, { node: c.node, source, target, events: this.events, uploads: { idleMs: c.limits.uploadIdleSeconds * 1000, fileBytes: c.limits.fileBytes } });
    const planner = this.planner;
    registerPolicyPeerRoutes(this.peer, { node: c.node, decisions: () => planner.decisions() });
    await this.peer.listen({ host: c.underlay.address, port: c.peerPort });

    const controlApp = async (https?: { cert: Buffer; key: Buffer }) => {
      const app = createApp(https);
      await addOpenApi(app, `roam agent ${c.node}: control API`, VERSION);
      registerControlRoutes(app, { node: c.node, router, table: this.table, ready: () => reconciler.ready });
      registerMigrationControlRoutes(app, { node: c.node, source, table: this.table, peers: client });
      registerPolicyControlRoutes(app, {
        node: c.node, table: this.table, decisions: () => planner.decisions(), setDraining, peerDecisions: (address) => client.decisions(address), events: this.events,
      });
      return app;
    };
    this.control = await controlApp();
    mkdirSync(dirname(c.api.socket), { recursive: true });
    rmSync(c.api.socket, { force: true });
    await this.control.listen({ path: c.api.socket });
    // Whoever can connect can freeze and move any service here: root only, whatever the umask.
    chmodSync(c.api.socket, 0o600);
    if (exposure) {
      const app = await controlApp(exposure.https);
      this.networkControl = app;
      const refused = (from: string, reason: ApiRefusal) => {
        this.events.warn(`control API request from ${from} refused: ${reason}`);
        this.events.emit('api.refused', { from, reason });
      };
      requireBearerToken(app, exposure.token, refused);
      app.server.on('tlsClientError', (err: Error & { code?: string }, socket: { remoteAddress?: string }) => refused(socket.remoteAddress ?? 'unknown', 'tls-handshake'));
      await app.listen({ host: exposure.host, port: exposure.port });
    }

    const m = splitHostPort(c.metrics.listen);
    this.metrics = await serveMetrics(this.registry, m.host, m.port, () => reconciler.ready);

    sync.start();
    planner.start();
    const api = c.api.listen ? `${c.api.socket} and ${c.api.tls ? 'https' : 'http'}://${c.api.listen}` : c.api.socket;
    this.events.info(`agent ${c.node} up: underlay ${c.underlay.address}, api ${api}, metrics ${c.metrics.listen}`);
  }

  /** Stops serving. Endpoints and the overlay stay as they are: a restarted agent adopts them. */
  /**
   * A renewed peer certificate: new connections, both ways, present it;
   * connections already open (a migration's image stream) finish on the old.
   * CRIU's page servers read the files anew at each start.
   */
  private usePeerCertificate(): void {
    if (!this.config.tls || !this.peer) return;
    const tls = readTlsMaterial(this.config.tls);
    (this.peer.server as unknown as TlsServer).setSecureContext({ ...tls });
    this.peerClient?.useTls(tls);
    this.events.info('peer certificate renewed: new peer connections use it');
  }

  async stop(): Promise<void> {
    this.certificates?.stop();
    clearInterval(this.housekeeping);
    await this.planner?.stop();
    this.kube?.stop();
    this.sync?.stop();
    this.reconciler?.stop();
    this.manager?.stopWatching();
    await this.control?.close();
    await this.networkControl?.close();
    await this.peer?.close();
    await new Promise<void>((resolve) => (this.metrics ? this.metrics.close(() => resolve()) : resolve()));
    this.session?.close();
  }
}
