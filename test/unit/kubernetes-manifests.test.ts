/**
 * deploy/ against the Kubernetes API schemas (kubernetes-models, generated
 * from the API server's published OpenAPI, and the Prometheus Operator's
 * CRDs), and against the agent itself: the CRDs are what the agent's TypeBox
 * schemas say, the ClusterRole grants what the agent calls, the alerts are
 * the ones Prometheus gets without the operator, the config is one the
 * agent accepts, and the kustomizations name every file.
 */
import test from 'ava';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Value } from '@sinclair/typebox/value';
import type { TSchema } from '@sinclair/typebox';
import { parse, parseAllDocuments } from 'yaml';
import { ConfigMap, Namespace, Pod, Service, ServiceAccount } from 'kubernetes-models/v1';
import { DaemonSet, Deployment } from 'kubernetes-models/apps/v1';
import { ClusterRole, ClusterRoleBinding, Role, RoleBinding } from 'kubernetes-models/rbac.authorization.k8s.io/v1';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1';
import { PrometheusRule, ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
import { parseConfig } from '../../src/config/load.js';
import { API_PERMISSIONS, SIGNER_NAMESPACE_PERMISSIONS, SIGNER_PERMISSIONS, type Permissions } from '../../src/kubernetes/client.js';
import { crdsYaml } from '../../src/kubernetes/crds.js';
import { CUSTOM_KINDS, GROUP, MigrationSpec, POD_ANNOTATIONS } from '../../src/kubernetes/resources.js';

const DEPLOY = fileURLToPath(new URL('../../../deploy/', import.meta.url));
const KUBE = join(DEPLOY, 'kubernetes');
const DOCS = fileURLToPath(new URL('../../../docs/', import.meta.url));

interface Manifest { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; [k: string]: unknown }
interface Validatable { validate(): void }

const MODELS: Record<string, new (data: never) => Validatable> = {
  'v1/Namespace': Namespace,
  'v1/ServiceAccount': ServiceAccount,
  'v1/Service': Service,
  'v1/ConfigMap': ConfigMap,
  'v1/Pod': Pod,
  'apps/v1/DaemonSet': DaemonSet,
  'apps/v1/Deployment': Deployment,
  'rbac.authorization.k8s.io/v1/ClusterRole': ClusterRole,
  'rbac.authorization.k8s.io/v1/ClusterRoleBinding': ClusterRoleBinding,
  'rbac.authorization.k8s.io/v1/Role': Role,
  'rbac.authorization.k8s.io/v1/RoleBinding': RoleBinding,
  'apiextensions.k8s.io/v1/CustomResourceDefinition': CustomResourceDefinition,
  'monitoring.coreos.com/v1/ServiceMonitor': ServiceMonitor,
  'monitoring.coreos.com/v1/PrometheusRule': PrometheusRule,
};

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return yamlFiles(p);
    return /\.ya?ml$/.test(e.name) && e.name !== 'kustomization.yaml' ? [p] : [];
  });
}

function manifests(file: string): Manifest[] {
  return parseAllDocuments(readFileSync(file, 'utf8')).map((d) => {
    if (d.errors.length) throw new Error(`${file}: ${d.errors.map((e) => e.message).join('; ')}`);
    return d.toJS() as Manifest;
  });
}

/** Validates with the model for its apiVersion and kind; a kind without one is an error, not a pass. */
function validate(m: Manifest, where: string): void {
  const Model = MODELS[`${m.apiVersion}/${m.kind}`];
  if (!Model) throw new Error(`${where}: no API schema known for ${m.apiVersion} ${m.kind}`);
  new Model(m as never).validate();
}

const clusterManifests = () => yamlFiles(KUBE).filter((f) => !f.includes('/examples/'));
const all = () => clusterManifests().flatMap((f) => manifests(f).map((m) => ({ file: relative(DEPLOY, f), m })));
const one = (kind: string, name: string) => {
  const found = all().find(({ m }) => m.kind === kind && m.metadata.name === name);
  if (!found) throw new Error(`no ${kind} ${name} in deploy/kubernetes`);
  return found.m;
};

test('every manifest validates against the Kubernetes API schemas', (t) => {
  const docs = all();
  t.true(docs.length >= 10, `${docs.length} manifests`);
  for (const { file, m } of docs) t.notThrows(() => validate(m, file), `${file}: ${m.kind} ${m.metadata.name}`);
  // The generated ConfigMaps, as kustomize will make them.
  t.notThrows(() => validate({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'roam-agent-config', namespace: 'roam-system' }, data: { 'agent.json': readFileSync(join(KUBE, 'agent.json'), 'utf8') } }, 'configMapGenerator'));
});

test('the validation would catch a broken manifest', (t) => {
  const ds = structuredClone(one('DaemonSet', 'roam-agent')) as Manifest & { spec: { template: { spec: { containers: unknown; hostPID: unknown } } } };
  ds.spec.template.spec.hostPID = 'yes';
  t.throws(() => validate(ds, 'a DaemonSet with hostPID "yes"'), { message: /hostPID/ });
  t.throws(() => validate({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'x' } }, 'a Widget'), { message: /no API schema known for example\.com\/v1 Widget/ });
});

test('deploy/kubernetes/crds.yaml is what the agent generates', (t) => {
  t.is(readFileSync(join(KUBE, 'crds.yaml'), 'utf8'), crdsYaml(), 'regenerate it: node dist/src/main.js kubernetes crds > deploy/kubernetes/crds.yaml');
});

type Schema = Record<string, unknown>;

/**
 * Walks a TypeBox schema and a CRD schema side by side and lists where they
 * disagree on what a value may be: types, fields, required fields, enums,
 * patterns, bounds. Written apart from crds.ts, so that a mistake there
 * shows here.
 */
function disagreements(tb: Schema, crd: Schema, path: string): string[] {
  const out: string[] = [];
  const say = (what: string) => out.push(`${path || '.'}: ${what}`);
  if (Array.isArray(tb.anyOf)) {
    const literals = (tb.anyOf as Schema[]).map((l) => l.const);
    if (JSON.stringify(crd.enum) !== JSON.stringify(literals)) say(`enum ${JSON.stringify(crd.enum)} vs literals ${JSON.stringify(literals)}`);
    if (crd.type !== typeof literals[0]) say(`type ${String(crd.type)} for ${typeof literals[0]} literals`);
    return out;
  }
  if (tb.type !== crd.type) say(`type ${String(crd.type)} vs ${String(tb.type)}`);
  for (const key of ['pattern', 'minLength', 'maxLength', 'minItems', 'maxItems', 'minimum', 'maximum']) {
    if (tb[key] !== crd[key]) say(`${key} ${String(crd[key])} vs ${String(tb[key])}`);
  }
  for (const key of ['exclusiveMinimum', 'exclusiveMaximum']) {
    const bound = key === 'exclusiveMinimum' ? 'minimum' : 'maximum';
    if (tb[key] !== undefined && (crd[key] !== true || crd[bound] !== tb[key])) say(`${key} ${String(tb[key])} is not kept`);
  }
  if (tb.format === 'date-time' || tb.format === 'mac') {
    if (crd.format !== tb.format) say(`format ${String(crd.format)} vs ${String(tb.format)}`);
  }
  if (tb.type === 'object') {
    const tp = (tb.properties ?? {}) as Record<string, Schema>;
    const cp = (crd.properties ?? {}) as Record<string, Schema>;
    if (!tb.properties) {
      if (crd['x-kubernetes-preserve-unknown-fields'] !== true) say('an open object must keep unknown fields');
    }
    const keys = new Set([...Object.keys(tp), ...Object.keys(cp)]);
    for (const k of keys) {
      if (!tp[k]) say(`field ${k} only in the CRD`);
      else if (!cp[k]) say(`field ${k} missing from the CRD`);
      else out.push(...disagreements(tp[k], cp[k], `${path}.${k}`));
    }
    const req = (s: Schema) => JSON.stringify([...((s.required as string[] | undefined) ?? [])].sort());
    if (req(tb) !== req(crd)) say(`required ${req(crd)} vs ${req(tb)}`);
  }
  if (tb.type === 'array') out.push(...disagreements(tb.items as Schema, crd.items as Schema, `${path}[]`));
  return out;
}

test('the CRDs\' openAPIV3Schema says what the agent\'s TypeBox schemas say', (t) => {
  const crds = manifests(join(KUBE, 'crds.yaml')) as unknown as { metadata: { name: string }; spec: { group: string; scope: string; names: { kind: string }; versions: { subresources: unknown; schema: { openAPIV3Schema: { properties: Record<string, Schema> } } }[] } }[];
  t.is(crds.length, CUSTOM_KINDS.length);
  for (const k of CUSTOM_KINDS) {
    const crd = crds.find((c) => c.spec.names.kind === k.kind);
    if (!crd) return t.fail(`no CRD for ${k.kind}`);
    t.is(crd.metadata.name, `${k.plural}.${GROUP}`);
    t.is(crd.spec.scope, 'Cluster');
    t.deepEqual(crd.spec.versions[0]!.subresources, { status: {} }, 'status is a subresource: the agent writes it apart from spec');
    const props = crd.spec.versions[0]!.schema.openAPIV3Schema.properties;
    t.deepEqual(disagreements(k.spec as unknown as Schema, props.spec!, `${k.kind}.spec`), []);
    t.deepEqual(disagreements(k.status as unknown as Schema, props.status!, `${k.kind}.status`), []);
  }
  // And the walk does see a difference.
  const drifted = structuredClone(crds[0]!.spec.versions[0]!.schema.openAPIV3Schema.properties.spec!) as Schema & { properties: Record<string, Schema>; required: string[] };
  delete drifted.properties.targetNode;
  drifted.required = ['endpoint'];
  t.deepEqual(disagreements(MigrationSpec as unknown as Schema, drifted, 'spec'), ['spec: field targetNode missing from the CRD', 'spec: required ["endpoint"] vs ["endpoint","targetNode"]']);
});

type Rules = { rules: { apiGroups: string[]; resources: string[]; verbs: string[]; resourceNames?: string[] }[] };

/** Each rule as `group/resource[names]: verbs`, sorted: what a role grants, or what the code lists. */
const granted = (role: Rules) => role.rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.map((res) => `${g}/${res}${r.resourceNames ? `[${r.resourceNames.join(',')}]` : ''}: ${[...r.verbs].sort().join(',')}`))).sort();
const used = (p: Permissions) => p.map(([g, res, verbs, names]) => `${g}/${res}${names ? `[${names.join(',')}]` : ''}: ${[...verbs].sort().join(',')}`).sort();

test('the ClusterRole grants exactly what the agent calls, and the signer\'s roles exactly what it calls', (t) => {
  t.deepEqual(granted(one('ClusterRole', 'roam-agent') as unknown as Rules), used(API_PERMISSIONS));
  const binding = one('ClusterRoleBinding', 'roam-agent') as unknown as { subjects: { name: string; namespace: string }[] };
  const ds = one('DaemonSet', 'roam-agent') as unknown as { metadata: { namespace: string }; spec: { template: { spec: { serviceAccountName: string } } } };
  t.deepEqual(binding.subjects.map((s) => `${s.namespace}/${s.name}`), [`${ds.metadata.namespace}/${ds.spec.template.spec.serviceAccountName}`]);

  t.deepEqual(granted(one('ClusterRole', 'roam-signer') as unknown as Rules), used(SIGNER_PERMISSIONS));
  t.deepEqual(granted(one('Role', 'roam-signer') as unknown as Rules), used(SIGNER_NAMESPACE_PERMISSIONS));
  const signer = one('Deployment', 'roam-signer') as unknown as { metadata: { namespace: string }; spec: { replicas: number; template: { spec: { serviceAccountName: string; containers: { args: string[] }[] } } } };
  const account = `${signer.metadata.namespace}/${signer.spec.template.spec.serviceAccountName}`;
  for (const kind of ['ClusterRoleBinding', 'RoleBinding']) {
    const b = one(kind, 'roam-signer') as unknown as { subjects: { name: string; namespace: string }[] };
    t.deepEqual(b.subjects.map((s) => `${s.namespace}/${s.name}`), [account], kind);
  }
  t.not(account, `${ds.metadata.namespace}/${ds.spec.template.spec.serviceAccountName}`, 'the agents do not hold the signer\'s rights');
  t.is(signer.spec.replicas, 1);
  // The signer trusts requests from the agents' account: the one the DaemonSet runs as.
  const args = signer.spec.template.spec.containers[0]!.args;
  t.deepEqual(args.slice(0, 3), ['signer', '--namespace', signer.metadata.namespace]);
  t.is(args[args.indexOf('--agents') + 1], `${ds.metadata.namespace}:${ds.spec.template.spec.serviceAccountName}`);
});

test('the PrometheusRule carries the same alerts as deploy/monitoring/roam-alerts.yaml', (t) => {
  const rule = one('PrometheusRule', 'roam-agent') as unknown as { spec: { groups: unknown } };
  const plain = parse(readFileSync(join(DEPLOY, 'monitoring/roam-alerts.yaml'), 'utf8')) as { groups: unknown };
  t.deepEqual(rule.spec.groups, plain.groups);
});

test('the DaemonSet runs the agent with the config it ships, on every node, with the node\'s own name and address', (t) => {
  const ds = one('DaemonSet', 'roam-agent') as unknown as {
    spec: { template: { spec: {
      hostNetwork: boolean; hostPID: boolean; priorityClassName: string; tolerations: { operator: string }[];
      containers: { args: string[]; env: { name: string; valueFrom: { fieldRef: { fieldPath: string } } }[]; ports: { name: string; containerPort: number; protocol: string }[];
        livenessProbe: { httpGet: { path: string; port: string } }; readinessProbe: { httpGet: { path: string; port: string } };
        securityContext: { capabilities: { add: string[] } } }[];
    } } };
  };
  const pod = ds.spec.template.spec;
  t.true(pod.hostNetwork && pod.hostPID);
  t.is(pod.priorityClassName, 'system-node-critical');
  t.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
  const agent = pod.containers[0]!;
  t.deepEqual(Object.fromEntries(agent.env.map((e) => [e.name, e.valueFrom.fieldRef.fieldPath])), { NODE_NAME: 'spec.nodeName', HOST_IP: 'status.hostIP' });
  t.deepEqual(agent.args, ['agent', '--config', '/etc/roam/agent.json', '--node', '$(NODE_NAME)', '--underlay-address', '$(HOST_IP)']);
  t.is(agent.livenessProbe.httpGet.path, '/healthz');
  t.is(agent.readinessProbe.httpGet.path, '/readyz');

  // The shipped config is one the agent accepts once the flags fill in the node, and the ports match it.
  const config = parseConfig({ ...JSON.parse(readFileSync(join(KUBE, 'agent.json'), 'utf8')), node: 'edge-1', underlay: { address: '192.0.2.1' } });
  t.truthy(config.kubernetes);
  // Peers over mutual TLS, with a certificate from the cluster, kept on the node's own state volume.
  t.truthy(config.kubernetes?.peerCertificates);
  t.falsy(config.insecurePlaintextPeers);
  for (const file of Object.values(config.tls!)) t.true(file.startsWith(`${config.stateDir}/`), `${file} is on the state volume`);
  const ports = Object.fromEntries(agent.ports.map((p) => [p.name, `${p.containerPort}/${p.protocol}`]));
  t.deepEqual(ports, { metrics: `${config.metrics.listen.split(':').at(-1)}/TCP`, peers: `${config.peerPort}/TCP`, vxlan: `${config.vxlanPort}/UDP` });

  // Every capability it asks for is explained in the docs.
  const docs = readFileSync(join(DOCS, 'KUBERNETES.md'), 'utf8');
  for (const cap of agent.securityContext.capabilities.add) t.regex(docs, new RegExp(`\\bCAP_${cap}\\b`), `docs/KUBERNETES.md says why CAP_${cap}`);
});

test('the kustomizations name every manifest, and everything they name exists', (t) => {
  const named = new Set<string>();
  const walk = (dir: string) => {
    const k = parse(readFileSync(join(dir, 'kustomization.yaml'), 'utf8')) as { resources?: string[]; configMapGenerator?: { files: string[] }[] };
    for (const r of k.resources ?? []) {
      const p = join(dir, r);
      t.true(existsSync(p), `${relative(DEPLOY, dir)}/kustomization.yaml names ${r}, which does not exist`);
      if (existsSync(join(p, 'kustomization.yaml'))) walk(p);
      else named.add(p);
    }
    for (const g of k.configMapGenerator ?? []) for (const f of g.files) t.true(existsSync(join(dir, f)), `${f} of a configMapGenerator`);
  };
  walk(DEPLOY);
  t.deepEqual(clusterManifests().filter((f) => !named.has(f)).map((f) => relative(DEPLOY, f)), []);
});

test('the example pod with a mobile IP validates, and asks the way the agent reads it', (t) => {
  const docs = manifests(join(KUBE, 'examples/mobile-pod.yaml'));
  for (const m of docs) t.notThrows(() => validate(m, `examples: ${m.kind} ${m.metadata.name}`));
  const pod = docs.find((m) => m.kind === 'Pod') as unknown as { metadata: { annotations: Record<string, string> } };
  const service = docs.find((m) => m.kind === 'Service')!;
  t.is(pod.metadata.annotations[POD_ANNOTATIONS.mobileIp], 'true');
  t.is(pod.metadata.annotations[POD_ANNOTATIONS.service], service.metadata.name);
  t.false('selector' in (service as unknown as { spec: object }).spec, 'a selector would make the cluster write the Service\'s slices itself');
});

test('the example Migration is one the agent accepts', (t) => {
  const examples = manifests(join(KUBE, 'examples/migration.yaml'));
  t.true(examples.length > 0);
  for (const m of examples) {
    t.is(m.apiVersion, 'roam.dev/v1alpha1');
    t.is(m.kind, 'Migration');
    const errors = [...Value.Errors(MigrationSpec as TSchema, m.spec)].map((e) => `${e.path}: ${e.message}`);
    t.deepEqual(errors, [], m.metadata.name);
  }
  t.false(Value.Check(MigrationSpec, { endpoint: 'web', targetNode: 'Edge_2' }), 'a bad node name is refused');
});

test('the image recipe copies only what its build context lets in', (t) => {
  const dockerfile = readFileSync(join(DEPLOY, 'image/Dockerfile'), 'utf8');
  const ignore = readFileSync(join(DEPLOY, 'image/Dockerfile.dockerignore'), 'utf8').split('\n').filter((l) => l.startsWith('!')).map((l) => l.slice(1));
  const copied = [...dockerfile.matchAll(/^COPY (?!--from)(.+) \S+$/gm)].flatMap((m) => m[1]!.split(' '));
  t.true(copied.length > 0);
  for (const c of copied) t.true(ignore.some((i) => c === i || i.startsWith(`${c}/`)), `${c} is let into the build context`);
  for (const c of copied) t.true(existsSync(join(DEPLOY, '..', c)), `${c} exists`);
  t.regex(dockerfile, /dpkg --compare-versions "\$version" ge "\$CRIU_MIN"/, 'the build stops on a CRIU older than 4.2');
});
