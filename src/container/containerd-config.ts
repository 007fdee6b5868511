/**
 * containerd's configuration for a node whose pods may move: the CRI
 * plugin with a runtime handler `roam` (the RuntimeClass's handler) whose
 * runc is roam's wrapper, and every path that must not be shared when
 * several containerds run on one host (the testbed runs one per node).
 * containerd 1.6 and 1.7 read config version 2 (CRI plugin
 * io.containerd.grpc.v1.cri); 2.x reads version 3, with the runtime part
 * in io.containerd.cri.v1.runtime. docs/KUBERNETES.md shows both.
 */

export interface ContainerdLayout {
  /** the containerd major version it is for */
  major: 1 | 2;
  /** metadata, content and snapshots */
  root: string;
  /** runtime state: bundles, fifos, pinned sandbox namespaces */
  state: string;
  /** its gRPC (and CRI) socket */
  address: string;
  /** runc's state, for the default runtime and `roam` (containerd puts /NAMESPACE below it) */
  runcRoot: string;
  /** the CNI plugins (Debian: /usr/lib/cni) and this node's network configurations */
  cniBinDir: string;
  cniConfDir: string;
  /** roam's runc wrapper, the `roam` handler's runc; absent: the handler is not offered */
  wrapper?: string;
  /** the pause image the sandboxes run, imported beforehand (no registry) */
  sandboxImage: string;
}

/** Plugins a node running pods does not need, and that would otherwise reach for host-wide paths. */
const NOT_NEEDED = [
  'io.containerd.snapshotter.v1.btrfs', 'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper',
  'io.containerd.snapshotter.v1.aufs', 'io.containerd.internal.v1.tracing', 'io.containerd.tracing.processor.v1.otlp',
];

const q = (s: string): string => JSON.stringify(s);

export function containerdConfig(l: ContainerdLayout): string {
  return (l.major === 1 ? version2(l) : version3(l)).join('\n');
}

function common(l: ContainerdLayout, version: number): string[] {
  return [
    `version = ${version}`,
    `root = ${q(l.root)}`,
    `state = ${q(l.state)}`,
    `disabled_plugins = [${NOT_NEEDED.map(q).join(', ')}]`,
    '',
    '[grpc]',
    `  address = ${q(l.address)}`,
    '[ttrpc]',
    `  address = ${q(`${l.address}.ttrpc`)}`,
    '[debug]',
    '  address = ""',
    '[metrics]',
    '  address = ""',
    '',
  ];
}

function runtimes(prefix: string, l: ContainerdLayout): string[] {
  const runc = (name: string, binary: string | undefined) => [
    `[${prefix}.containerd.runtimes.${name}]`,
    '  runtime_type = "io.containerd.runc.v2"',
    ...(name === 'roam' ? ['  pod_annotations = ["roam.dev/*"]'] : []),
    `[${prefix}.containerd.runtimes.${name}.options]`,
    ...(binary ? [`  BinaryName = ${q(binary)}`] : []),
    `  Root = ${q(l.runcRoot)}`,
    '  SystemdCgroup = false',
  ];
  return [...runc('runc', undefined), ...(l.wrapper ? runc('roam', l.wrapper) : [])];
}

function version2(l: ContainerdLayout): string[] {
  const cri = '[plugins."io.containerd.grpc.v1.cri"';
  return [
    ...common(l, 2),
    `${cri}]`,
    `  sandbox_image = ${q(l.sandboxImage)}`,
    '  disable_apparmor = true',
    '  netns_mounts_under_state_dir = true',
    `${cri}.containerd]`,
    '  snapshotter = "overlayfs"',
    '  default_runtime_name = "runc"',
    ...runtimes('plugins."io.containerd.grpc.v1.cri"', l),
    `${cri}.cni]`,
    `  bin_dir = ${q(l.cniBinDir)}`,
    `  conf_dir = ${q(l.cniConfDir)}`,
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${q(`${l.root}/opt`)}`,
    '',
  ];
}

function version3(l: ContainerdLayout): string[] {
  return [
    ...common(l, 3),
    "[plugins.'io.containerd.cri.v1.images'.pinned_images]",
    `  sandbox = ${q(l.sandboxImage)}`,
    "[plugins.'io.containerd.cri.v1.runtime']",
    '  disable_apparmor = true',
    '  netns_mounts_under_state_dir = true',
    "[plugins.'io.containerd.cri.v1.runtime'.containerd]",
    '  default_runtime_name = "runc"',
    ...runtimes("plugins.'io.containerd.cri.v1.runtime'", l),
    "[plugins.'io.containerd.cri.v1.runtime'.cni]",
    `  bin_dirs = [${q(l.cniBinDir)}]`,
    `  conf_dir = ${q(l.cniConfDir)}`,
    "[plugins.'io.containerd.nri.v1.nri']",
    '  disable = true',
    "[plugins.'io.containerd.internal.v1.opt']",
    `  path = ${q(`${l.root}/opt`)}`,
    '',
  ];
}
