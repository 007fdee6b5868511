/**
 * The agent's configuration, as a TypeBox schema. One JSON file per node;
 * parsed once at the edge (config/load.ts), then frozen.
 */
import { Type, type Static } from '@sinclair/typebox';
import { IpAddress, NodeName } from '../records/names.js';
import { EndpointPolicy } from '../records/policy.js';

export const Prefix = Type.String({ format: 'prefix', description: 'address/length, e.g. 10.244.0.0/16' });
export const HostPort = Type.String({ format: 'hostport', description: 'ADDRESS:PORT, e.g. 127.0.0.1:9464 or [::1]:9464' });

export const PeerConfig = Type.Object(
  {
    node: NodeName,
    address: IpAddress,
  },
  { additionalProperties: false, description: "Another node: its name and its underlay address (its VTEP and its agent's peer endpoint)" },
);

export const AgentConfig = Type.Object(
  {
    node: NodeName,
    underlay: Type.Object(
      {
        address: IpAddress,
        interface: Type.Optional(Type.String({ minLength: 1, maxLength: 15, description: 'underlay device for VXLAN; by default the one holding the address' })),
        rateMbit: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1e6, description: 'what the underlay carries between nodes, in Mbit/s: the automatic migration mode plans with it (1000 is assumed when unset)' })),
        pullShare: Type.Number({ exclusiveMinimum: 0, maximum: 1, default: 0.8, description: 'share of rateMbit a post-copy page pull may use, the rest left to the services\' clients (the pull goes unpaced without rateMbit)' }),
      },
      { additionalProperties: false },
    ),
    vni: Type.Integer({ minimum: 1, maximum: 16777215, description: 'VXLAN network identifier shared by all nodes' }),
    vxlanPort: Type.Integer({ minimum: 1, maximum: 65535, default: 4789 }),
    overlay: Type.Object(
      {
        subnet: Prefix,
        range: Type.Optional(Prefix),
        mtu: Type.Integer({ minimum: 1280, maximum: 65000, default: 1450 }),
      },
      { additionalProperties: false, description: "subnet: the whole overlay; range: this node's allocation range inside it (with kubernetes, claimed from the cluster when unset)" },
    ),
    peers: Type.Array(PeerConfig, { default: [] }),
    peerPort: Type.Integer({ minimum: 1, maximum: 65535, default: 7946, description: 'agent-to-agent port on the underlay address' }),
    api: Type.Object(
      {
        socket: Type.String({ minLength: 1, description: 'unix socket of the control API (root only)' }),
        listen: Type.Optional(Type.String({
          format: 'hostport',
          description: 'also serve the control API over TCP here, to holders of api.tokenFile\'s token; anywhere but loopback only with api.tls',
        })),
        tls: Type.Optional(Type.Object(
          {
            cert: Type.String({ minLength: 1, description: "PEM file of the API's server certificate (clients check it)" }),
            key: Type.String({ minLength: 1, description: 'PEM file of its private key' }),
          },
          { additionalProperties: false, description: 'serve api.listen over HTTPS' },
        )),
        tokenFile: Type.Optional(Type.String({
          minLength: 1,
          description: 'file holding the bearer token every request to api.listen must carry (at least 32 characters); required with api.listen',
        })),
      },
      { additionalProperties: false },
    ),
    metrics: Type.Object(
      {
        listen: HostPort,
      },
      { additionalProperties: false },
    ),
    stateDir: Type.String({ minLength: 1, description: 'directory for endpoint records, logs and namespaces, container images and runc state' }),
    syncIntervalMs: Type.Integer({ minimum: 100, maximum: 600000, default: 2000, description: 'anti-entropy period between agents' }),
    tls: Type.Optional(Type.Object(
      {
        ca: Type.String({ minLength: 1, description: "PEM file of the cluster CA: peers must present a certificate it signed" }),
        cert: Type.String({ minLength: 1, description: "PEM file of this node's certificate (for the underlay address), signed by the CA" }),
        key: Type.String({ minLength: 1, description: "PEM file of this node's private key" }),
      },
      { additionalProperties: false, description: 'mutual TLS for the peer protocol (control and images) and the page servers; required unless insecurePlaintextPeers is true' },
    )),
    insecurePlaintextPeers: Type.Optional(Type.Boolean({
      description: 'serve the peer protocol and the page servers as plain, unauthenticated TCP instead of tls: anyone who reaches peerPort can then start processes as root on this node and read services\' memory. Only for a private lab underlay; the agent warns at every start',
    })),
    limits: Type.Object(
      {
        uploadIdleSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 30, description: 'an upload from a peer (images, a container\'s files or image, held packets) that moves no byte for this long is cut off' }),
        imageBytes: Type.Optional(Type.Integer({ minimum: 1048576, description: 'the most one migration\'s memory images may take, all uploads together; by default this node\'s RAM plus 1 GiB (no endpoint that fits a node of this size dumps more)' })),
        fileBytes: Type.Integer({ minimum: 1048576, default: 17179869184, description: 'the most one upload of a container\'s files, or one container image, may take (16 GiB by default)' }),
        arrivalIdleSeconds: Type.Integer({ minimum: 1, maximum: 86400, default: 60, description: 'an arriving migration whose source has not been heard from for this long before the switch is given up' }),
        peerConnections: Type.Integer({ minimum: 16, maximum: 65536, default: 1024, description: 'connections the peer port holds at once; more are refused until some close' }),
        reserveFreeBytes: Type.Integer({ minimum: 0, default: 1073741824, description: 'free space kept in stateDir: an arrival is refused when less would be left (1 GiB by default)' }),
      },
      { additionalProperties: false, default: {}, description: 'bounds on what peers may send: every upload is limited in size and in idle time, every arrival in how long it waits' },
    ),
    migration: Type.Object(
      {
        maxConcurrent: Type.Integer({
          minimum: 1, maximum: 16, default: 1,
          description: 'migrations this node drives at once (as their source); more are queued in order and say so in their status',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    policy: Type.Object(
      {
        intervalMs: Type.Integer({ minimum: 100, maximum: 60000, default: 1000, description: 'how often the policies observe this node\'s endpoints and decide' }),
        default: Type.Object(EndpointPolicy.properties, {
          additionalProperties: false, default: {},
          description: 'the policy of endpoints that have none of their own (by default: leave a draining node, nothing else)',
        }),
      },
      { additionalProperties: false, default: {} },
    ),
    kubernetes: Type.Optional(Type.Object(
      {
        kubeconfig: Type.Optional(Type.String({ minLength: 1, description: "a kubeconfig file; by default the pod's service account (in-cluster)" })),
        rangePrefixLength: Type.Integer({ minimum: 8, maximum: 30, default: 24, description: 'size of the range each node claims from overlay.subnet, as a prefix length' }),
        resyncMs: Type.Integer({ minimum: 1000, maximum: 3600000, default: 30000, description: 'how often the Kubernetes loops re-check everything, whatever the watches said' }),
        runtimeRoot: Type.String({
          minLength: 1, default: '/run/containerd/runc/k8s.io',
          description: "runc's state directory for the pods' containers (containerd's runc shim, CRI namespace k8s.io): where the agent finds an opted-in pod's network namespace",
        }),
        peerCertificates: Type.Optional(Type.Object(
          {
            expirationSeconds: Type.Integer({ minimum: 600, maximum: 315360000, default: 604800, description: 'the lifetime asked of the signer (it issues whole days, at most its --max-days)' }),
            renewAfterSeconds: Type.Optional(Type.Integer({ minimum: 1, description: 'ask for the next certificate this long after the current one began; by default at two thirds of its life' })),
            waitSeconds: Type.Integer({ minimum: 1, maximum: 86400, default: 300, description: 'how long to wait for the signer before the start (or a renewal) fails' }),
          },
          {
            additionalProperties: false,
            description: "get this node's peer certificate from the cluster (a CertificateSigningRequest for roam's signer, `roam signer`) and keep it renewed: the agent writes its key, its certificate and the CA to the files tls names",
          },
        )),
      },
      { additionalProperties: false, description: 'Kubernetes mode: peers from Node objects, migrations as Migration resources, endpoints recorded as RoamEndpoint resources' },
    )),
    devices: Type.Object(
      {
        bridge: Type.String({ minLength: 1, maxLength: 15, default: 'roam0' }),
        vxlan: Type.String({ minLength: 1, maxLength: 15, default: 'roam-vx' }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false },
);

export type AgentConfig = Static<typeof AgentConfig>;
export type PeerConfig = Static<typeof PeerConfig>;
