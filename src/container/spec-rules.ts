/**
 * What a container's base configuration may hold: the one rule roam holds
 * a configuration to where it comes in, from a user's bundle when the
 * container is made (`roam run --bundle`) and from a peer when it arrives
 * (a migration's prepare). The configuration goes to runc, which runs as
 * root on the node: hooks, host bind mounts, joined namespaces, capabilities
 * or devices in it would be the sender's on this node.
 *
 * A target cannot see the bundle or the runc a container was made from, so
 * "what roam built for this container" is checked as what roam builds for
 * any container: runc's default configuration (`runc spec`, what `--rootfs`
 * starts from), with no more privilege than it gives. Whatever the renderer
 * (spec.ts) overwrites on every node is ignored: the root's path and
 * writability, the terminal, the hostname, the network namespace's path,
 * CRIU's options file, and the mounts at the volumes' destinations. What is
 * the container's own within that ceiling (its program, environment, user,
 * limits, which of the standard mounts, seccomp filter) is accepted as sent.
 *
 * Pure: decided by its arguments alone.
 */
import { RoamError } from '../errors/roam-error.js';
import type { OciSpec } from './spec.js';

/** The mounts of runc's default configuration: the only ones besides the volumes. */
export const STANDARD_MOUNTS: readonly { destination: string; type: string; source: string; options?: readonly string[] }[] = [
  { destination: '/proc', type: 'proc', source: 'proc' },
  { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
  { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
  { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
  { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
  { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
  { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
];

/** The namespaces every container has (the network one is the endpoint's, each node supplies its path). */
export const REQUIRED_NAMESPACES = ['pid', 'network', 'ipc', 'uts', 'mount'] as const;
/** Also roam's where runc's default has it (runc ≥ 1.2 on a cgroup v2 host): it only takes away. */
export const OPTIONAL_NAMESPACES = ['cgroup'] as const;

/** runc's default capabilities, in every set: no set may hold another. */
export const DEFAULT_CAPABILITIES = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'] as const;
const CAPABILITY_SETS = ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'];

/** What runc's default masks and makes read-only in /proc and /sys (newer runc masks more, never less). */
export const DEFAULT_MASKED_PATHS = [
  '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi',
] as const;
export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'] as const;

const TOP_FIELDS = new Set(['ociVersion', 'process', 'root', 'hostname', 'domainname', 'mounts', 'annotations', 'linux', 'hooks']);
const PROCESS_FIELDS = new Set([
  'terminal', 'consoleSize', 'user', 'args', 'env', 'cwd', 'capabilities', 'rlimits', 'noNewPrivileges', 'apparmorProfile', 'selinuxLabel', 'oomScoreAdj',
]);
const LINUX_FIELDS = new Set(['namespaces', 'resources', 'maskedPaths', 'readonlyPaths', 'seccomp', 'sysctl', 'rootfsPropagation', 'mountLabel', 'personality']);
/** Fields of `linux` that are roam's only when absent or empty. */
const LINUX_EMPTY_ONLY: Record<string, string> = {
  devices: 'device nodes are not roam\'s (they would give the container the node\'s devices)',
  uidMappings: 'a user namespace is not roam\'s',
  gidMappings: 'a user namespace is not roam\'s',
};
const PRIVATE_PROPAGATIONS = new Set(['private', 'rprivate', 'slave', 'rslave']);

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const isEmpty = (v: unknown): boolean => v === undefined || (Array.isArray(v) && v.length === 0) || (isObject(v) && Object.keys(v).length === 0);
const q = (v: unknown): string => JSON.stringify(v);

function unknownFields(at: string, obj: Json, known: ReadonlySet<string>, out: string[]): void {
  for (const k of Object.keys(obj)) if (!known.has(k)) out.push(`${at}${k}: not a field of the configurations roam builds`);
}

function checkHooks(hooks: unknown, out: string[]): void {
  if (hooks === undefined) return;
  if (!isObject(hooks)) return void out.push('hooks: roam runs no hooks (runc would run them as root on the node)');
  for (const [k, v] of Object.entries(hooks)) {
    if (!(Array.isArray(v) && v.length === 0)) out.push(`hooks.${k}: roam runs no hooks (runc would run them as root on the node)`);
  }
}

function checkProcess(p: Json, out: string[]): void {
  unknownFields('process.', p, PROCESS_FIELDS, out);
  const caps = p.capabilities;
  if (caps === undefined) out.push('process.capabilities: missing (runc would leave the process every capability of root)');
  else if (!isObject(caps)) out.push('process.capabilities: not an object');
  else {
    for (const [set, list] of Object.entries(caps)) {
      if (!CAPABILITY_SETS.includes(set)) out.push(`process.capabilities.${set}: not a capability set`);
      else if (!Array.isArray(list)) out.push(`process.capabilities.${set}: not a list`);
      else {
        const beyond = list.filter((c) => !(DEFAULT_CAPABILITIES as readonly unknown[]).includes(c));
        if (beyond.length > 0) out.push(`process.capabilities.${set}: ${beyond.map(String).join(', ')} beyond roam's (${DEFAULT_CAPABILITIES.join(', ')})`);
      }
    }
  }
  if (p.noNewPrivileges !== true) out.push(`process.noNewPrivileges: must be true, as roam's, got ${q(p.noNewPrivileges)}`);
  if (p.oomScoreAdj !== undefined && !(typeof p.oomScoreAdj === 'number' && p.oomScoreAdj >= 0)) {
    out.push(`process.oomScoreAdj: ${q(p.oomScoreAdj)} below 0 would shield the container from the OOM killer at the node's expense`);
  }
  if (p.rlimits !== undefined) {
    if (!Array.isArray(p.rlimits)) out.push('process.rlimits: not a list');
    else {
      p.rlimits.forEach((r: unknown, i) => {
        const l = isObject(r) ? r : {};
        const most = Math.max(Number(l.soft ?? 0), Number(l.hard ?? 0));
        // Raised, these two grant what CAP_SYS_NICE would: real-time scheduling, negative nice values.
        if (l.type === 'RLIMIT_RTPRIO' && most > 0) out.push(`process.rlimits[${i}]: RLIMIT_RTPRIO ${most} grants real-time scheduling (roam's is 0)`);
        if (l.type === 'RLIMIT_NICE' && most > 20) out.push(`process.rlimits[${i}]: RLIMIT_NICE ${most} grants a priority above normal (roam's allows none)`);
      });
    }
  }
}

function checkMounts(mounts: unknown, volumes: ReadonlySet<string>, out: string[]): void {
  if (mounts === undefined) return;
  if (!Array.isArray(mounts)) return void out.push('mounts: not a list');
  const seen = new Set<string>();
  mounts.forEach((m: unknown, i) => {
    const mount = isObject(m) ? m : {};
    const dest = mount.destination;
    // The renderer drops whatever the base mounts at a volume's destination and binds the volume's folder there.
    if (typeof dest === 'string' && volumes.has(dest)) return;
    const standard = STANDARD_MOUNTS.find((s) => s.destination === dest);
    const what = `mounts[${i}] (${q(mount.type)} ${q(mount.source)} at ${q(dest)})`;
    if (!standard) return void out.push(`${what}: neither one of roam's standard mounts (${STANDARD_MOUNTS.map((s) => s.destination).join(', ')}) nor a volume's destination`);
    if (seen.has(standard.destination)) return void out.push(`${what}: mounted twice`);
    seen.add(standard.destination);
    const options = mount.options === undefined ? [] : mount.options;
    const same = Object.keys(mount).every((k) => ['destination', 'type', 'source', 'options'].includes(k))
      && mount.type === standard.type && mount.source === standard.source
      && Array.isArray(options) && sameSet(options, standard.options ?? []);
    if (!same) out.push(`${what}: differs from roam's ${standard.destination} (${q(standard.type)} ${q(standard.source)}, options ${q(standard.options ?? [])})`);
  });
}

function sameSet(a: readonly unknown[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].map(String).sort().join('\0') === [...b].sort().join('\0');
}

function checkNamespaces(namespaces: unknown, out: string[]): void {
  if (!Array.isArray(namespaces)) return void out.push('linux.namespaces: not a list');
  const seen = new Set<string>();
  const allowed: readonly string[] = [...REQUIRED_NAMESPACES, ...OPTIONAL_NAMESPACES];
  namespaces.forEach((n: unknown, i) => {
    const ns = isObject(n) ? n : {};
    const type = ns.type;
    const at = `linux.namespaces[${i}] (${q(type)})`;
    for (const k of Object.keys(ns)) if (k !== 'type' && k !== 'path') out.push(`${at}.${k}: not a field of the configurations roam builds`);
    if (ns.path !== undefined) out.push(`${at}: path ${q(ns.path)} joins an existing namespace (roam's are new; the node supplies the network namespace)`);
    if (typeof type !== 'string' || !allowed.includes(type)) out.push(`${at}: not a namespace roam uses (${allowed.join(', ')})`);
    else if (seen.has(type)) out.push(`${at}: given twice`);
    else seen.add(type);
  });
  for (const t of REQUIRED_NAMESPACES) if (!seen.has(t)) out.push(`linux.namespaces: ${t} is missing (the container would share the node's)`);
}

function checkLinux(l: Json, out: string[]): void {
  const known = new Set([...LINUX_FIELDS, ...Object.keys(LINUX_EMPTY_ONLY)]);
  unknownFields('linux.', l, known, out);
  for (const [k, why] of Object.entries(LINUX_EMPTY_ONLY)) if (!isEmpty(l[k])) out.push(`linux.${k}: ${why}`);
  checkNamespaces(l.namespaces, out);
  // runc's default denies every device (runc then allows its few safe ones itself): nothing may be allowed on top.
  const rules = isObject(l.resources) ? l.resources.devices : undefined;
  const first = Array.isArray(rules) && isObject(rules[0]) ? rules[0] : undefined;
  const denyAll = first !== undefined && first.allow === false && first.access === 'rwm' && (first.type === undefined || first.type === 'a')
    && first.major === undefined && first.minor === undefined;
  if (!denyAll) out.push('linux.resources.devices: must start by denying every device ({"allow":false,"access":"rwm"}), as roam\'s does');
  if (Array.isArray(rules)) {
    rules.forEach((r: unknown, i) => {
      if (!isObject(r) || r.allow !== false) out.push(`linux.resources.devices[${i}]: allows a device (roam's allow none)`);
    });
  }
  for (const [field, wanted] of [['maskedPaths', DEFAULT_MASKED_PATHS], ['readonlyPaths', DEFAULT_READONLY_PATHS]] as const) {
    const have = Array.isArray(l[field]) ? (l[field] as unknown[]) : [];
    const missing = wanted.filter((p) => !have.includes(p));
    if (missing.length > 0) out.push(`linux.${field}: ${missing.join(', ')} missing (roam's has them)`);
  }
  if (l.seccomp !== undefined) {
    if (!isObject(l.seccomp)) out.push('linux.seccomp: not an object');
    else for (const k of ['listenerPath', 'listenerMetadata']) if (l.seccomp[k] !== undefined) out.push(`linux.seccomp.${k}: would hand the filter to a program on the node`);
  }
  if (l.rootfsPropagation !== undefined && !PRIVATE_PROPAGATIONS.has(String(l.rootfsPropagation))) {
    out.push(`linux.rootfsPropagation: ${q(l.rootfsPropagation)} would share the container's mounts with the node`);
  }
}

/**
 * Every way `spec` (a base configuration, as it travels) goes beyond what
 * roam builds for a container with volumes at `volumes`: one line each,
 * naming the field. Empty: the configuration is roam's own.
 */
export function checkContainerSpec(spec: OciSpec, volumes: readonly { destination: string }[]): string[] {
  const out: string[] = [];
  const s = spec as unknown as Json;
  unknownFields('', s, TOP_FIELDS, out);
  checkHooks(s.hooks, out);
  if (isObject(s.process)) checkProcess(s.process, out);
  else out.push('process: not an object');
  checkMounts(s.mounts, new Set(volumes.map((v) => v.destination)), out);
  if (isObject(s.annotations)) {
    for (const k of Object.keys(s.annotations)) if (k.startsWith('org.systemd.property.')) out.push(`annotations.${k}: a systemd property runc would set on the container's unit`);
  }
  if (isObject(s.linux)) checkLinux(s.linux, out);
  else out.push('linux: not an object');
  return out;
}

/** Refuses (INPUT_INVALID) a base configuration that goes beyond what roam builds, naming every difference. */
export function requireRoamSpec(spec: OciSpec, volumes: readonly { destination: string }[], what: string): void {
  const problems = checkContainerSpec(spec, volumes);
  if (problems.length > 0) throw new RoamError('INPUT_INVALID', `${what} is not one roam builds: ${problems.join('; ')}`, { problems });
}
