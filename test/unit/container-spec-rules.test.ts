/**
 * A container's configuration from a peer (or a user's bundle) is refused
 * unless it is one roam builds: no hooks, only the standard mounts and the
 * volumes, exactly roam's new namespaces, no more privilege than runc's
 * default. Every difference is named.
 */
import test from 'ava';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { EndpointManager } from '../../src/endpoint/manager.js';
import { RoamError } from '../../src/errors/roam-error.js';
import { checkContainerSpec, requireRoamSpec } from '../../src/container/spec-rules.js';
import { parseOciSpec, renderSpec, type OciSpec } from '../../src/container/spec.js';
import { MigrationTarget } from '../../src/migration/target.js';
import type { PrepareRequest } from '../../src/migration/target-agent.js';
import { CRIU_CONFIG_ANNOTATION } from '../../src/sys/runc.js';

interface Mutable {
  [field: string]: unknown;
  process: { [field: string]: unknown; capabilities?: Record<string, string[]> };
  mounts: Record<string, unknown>[];
  linux: { [field: string]: unknown; namespaces: { type: string; path?: string }[]; maskedPaths: string[]; readonlyPaths: string[] };
}

/** `runc spec` of runc 1.1.5 (what `roam run --rootfs` starts from), with a program. */
const RUNC_1_1: Mutable = {
  ociVersion: '1.0.2-dev',
  process: {
    terminal: true, user: { uid: 0, gid: 0 }, args: ['/bin/echo-server', '7000'],
    env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'], cwd: '/',
    capabilities: {
      bounding: ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'], effective: ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'],
      permitted: ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'], ambient: ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'],
    },
    rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }], noNewPrivileges: true,
  },
  root: { path: 'rootfs', readonly: true },
  hostname: 'runc',
  mounts: [
    { destination: '/proc', type: 'proc', source: 'proc' },
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
    { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] },
  ],
  linux: {
    resources: { devices: [{ allow: false, access: 'rwm' }] },
    namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }],
    maskedPaths: ['/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list', '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi'],
    readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
  },
};

/** roam's base configuration, changed by `change` (on a copy), parsed as the wire and a bundle parse it. */
function spec(change: (s: Mutable) => void = () => undefined): OciSpec {
  const s = structuredClone(RUNC_1_1);
  change(s);
  return parseOciSpec(s, 'test');
}

const VOLUMES = [{ destination: '/data' }];

test("what roam builds passes: runc's default, a newer runc's, a bundle made from it", (t) => {
  t.deepEqual(checkContainerSpec(spec(), VOLUMES), []);
  // runc ≥ 1.2: no ambient set, one more masked path, a cgroup namespace on a cgroup v2 host.
  t.deepEqual(checkContainerSpec(spec((s) => {
    delete s.process.capabilities!.ambient;
    s.linux.maskedPaths = [...RUNC_1_1.linux.maskedPaths, '/sys/devices/virtual/tpm'];
    s.linux.namespaces = [...RUNC_1_1.linux.namespaces, { type: 'cgroup' }];
    s.ociVersion = '1.2.0';
  }), VOLUMES), []);
  // The e2e bundle: the default with its own root folder and program, no volumes.
  t.deepEqual(checkContainerSpec(spec((s) => {
    s.root = { path: '/tmp/roam-rootfs-x/rootfs', readonly: true };
    s.process.args = ['/bin/echo-server', '7100'];
  }), []), []);
  // Less than roam's is still roam's: fewer capabilities and mounts, a non-root user, limits, a seccomp filter.
  t.deepEqual(checkContainerSpec(spec((s) => {
    s.process.capabilities = { bounding: ['CAP_KILL'], effective: [] };
    s.process.user = { uid: 1000, gid: 1000 };
    s.mounts = s.mounts.slice(0, 2);
    s.linux.resources = { devices: [{ allow: false, access: 'rwm' }], memory: { limit: 1 << 28 }, pids: { limit: 64 } };
    s.linux.seccomp = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] };
  }), VOLUMES), []);
});

test('what the renderer overwrites on each node is not judged: root, terminal, hostname, CRIU options file, mounts at volumes', (t) => {
  const sent = spec((s) => {
    s.root = { path: '/etc', readonly: false };
    s.process.terminal = true;
    s.hostname = 'anything';
    s.annotations = { [CRIU_CONFIG_ANNOTATION]: '/root/evil.conf', 'com.example.note': 'kept' };
    s.mounts = [...RUNC_1_1.mounts, { destination: '/data', type: 'bind', source: '/etc', options: ['rbind', 'rw'] }];
  });
  t.deepEqual(checkContainerSpec(sent, VOLUMES), []);
  // …because each node writes its own: the volume's folder, its namespace, its CRIU options file.
  const rendered = renderSpec(sent, { hostname: 'web', netns: '/s/netns/web', criuConfig: '/s/criu.conf', volumes: [{ source: '/s/volumes/0', destination: '/data' }] });
  t.is(rendered.root.path, 'rootfs');
  t.deepEqual(rendered.mounts?.filter((m) => m.destination === '/data'), [{ destination: '/data', type: 'bind', source: '/s/volumes/0', options: ['rbind', 'rw'] }]);
  t.is(rendered.annotations?.[CRIU_CONFIG_ANNOTATION], '/s/criu.conf');
  // The same bind where no volume is: refused.
  t.regex(checkContainerSpec(sent, []).join('\n'), /^mounts\[7\] \("bind" "\/etc" at "\/data"\): neither one of roam's standard mounts/);
});

/** Each refusal names its field; the rest of the configuration is roam's. */
const REFUSED: [string, (s: Mutable) => void, RegExp][] = [
  ['hooks.prestart', (s) => { s.hooks = { prestart: [{ path: '/bin/sh', args: ['sh', '-c', 'touch /pwned'] }] }; }, /^hooks\.prestart: roam runs no hooks/],
  ['hooks.createRuntime', (s) => { s.hooks = { createRuntime: [{ path: '/bin/true' }], poststop: [] }; }, /^hooks\.createRuntime: roam runs no hooks/],
  ['a host bind mount', (s) => { s.mounts = [...RUNC_1_1.mounts, { destination: '/host', type: 'bind', source: '/', options: ['rbind', 'rw'] }]; }, /^mounts\[7\] \("bind" "\/" at "\/host"\): neither one of roam's standard mounts/],
  ['a standard destination bound to the host', (s) => { s.mounts = [{ destination: '/proc', type: 'proc', source: '/proc', options: ['rbind'] }]; }, /^mounts\[0\] \("proc" "\/proc" at "\/proc"\): differs from roam's \/proc/],
  ['an overlay of host folders', (s) => { s.mounts = [{ destination: '/sys', type: 'overlay', source: 'overlay', options: ['lowerdir=/'] }]; }, /^mounts\[0\] .*: differs from roam's \/sys/],
  ['/sys writable', (s) => { s.mounts = [{ destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'rw'] }]; }, /^mounts\[0\] .*: differs from roam's \/sys/],
  ['a namespace with a path', (s) => { s.linux.namespaces = [{ type: 'pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount', path: '/proc/1/ns/mnt' }]; }, /^linux\.namespaces\[4\] \("mount"\): path "\/proc\/1\/ns\/mnt" joins an existing namespace/],
  ['the network namespace with a path', (s) => { s.linux.namespaces = [{ type: 'pid' }, { type: 'network', path: '/proc/1/ns/net' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }]; }, /^linux\.namespaces\[1\] \("network"\): path/],
  ['an extra namespace', (s) => { s.linux.namespaces = [...RUNC_1_1.linux.namespaces, { type: 'user' }]; }, /^linux\.namespaces\[5\] \("user"\): not a namespace roam uses/],
  ['a namespace twice', (s) => { s.linux.namespaces = [...RUNC_1_1.linux.namespaces, { type: 'pid' }]; }, /^linux\.namespaces\[5\] \("pid"\): given twice/],
  ['a missing namespace', (s) => { s.linux.namespaces = RUNC_1_1.linux.namespaces.filter((n) => n.type !== 'mount'); }, /^linux\.namespaces: mount is missing/],
  ['a capability beyond the default', (s) => { s.process.capabilities!.bounding!.push('CAP_SYS_ADMIN'); }, /^process\.capabilities\.bounding: CAP_SYS_ADMIN beyond roam's/],
  ['no capabilities at all (runc keeps root\'s)', (s) => { delete s.process.capabilities; }, /^process\.capabilities: missing/],
  ['new privileges allowed', (s) => { s.process.noNewPrivileges = false; }, /^process\.noNewPrivileges: must be true/],
  ['real-time scheduling', (s) => { s.process.rlimits = [{ type: 'RLIMIT_RTPRIO', hard: 99, soft: 99 }]; }, /^process\.rlimits\[0\]: RLIMIT_RTPRIO 99/],
  ['shielded from the OOM killer', (s) => { s.process.oomScoreAdj = -1000; }, /^process\.oomScoreAdj: -1000/],
  ['an unknown process field', (s) => { s.process.ioPriority = { class: 'IOPRIO_CLASS_RT', priority: 0 }; }, /^process\.ioPriority: not a field/],
  ['device nodes', (s) => { s.linux.devices = [{ path: '/dev/sda', type: 'b', major: 8, minor: 0 }]; }, /^linux\.devices: device nodes are not roam's/],
  ['a device allowed', (s) => { s.linux.resources = { devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'b', major: 8, access: 'rwm' }] }; }, /^linux\.resources\.devices\[1\]: allows a device/],
  ['no device rule', (s) => { delete s.linux.resources; }, /^linux\.resources\.devices: must start by denying every device/],
  ['/proc/sys writable', (s) => { s.linux.readonlyPaths = ['/proc/bus']; }, /^linux\.readonlyPaths: \/proc\/fs, \/proc\/irq, \/proc\/sys, \/proc\/sysrq-trigger missing/],
  ['/proc/kcore unmasked', (s) => { s.linux.maskedPaths = RUNC_1_1.linux.maskedPaths.filter((p) => p !== '/proc/kcore'); }, /^linux\.maskedPaths: \/proc\/kcore missing/],
  ['a cgroup path of its own', (s) => { s.linux.cgroupsPath = '/system.slice'; }, /^linux\.cgroupsPath: not a field/],
  ['a user namespace mapping', (s) => { s.linux.uidMappings = [{ containerID: 0, hostID: 0, size: 1 }]; }, /^linux\.uidMappings: a user namespace is not roam's/],
  ['a seccomp listener on the node', (s) => { s.linux.seccomp = { defaultAction: 'SCMP_ACT_ALLOW', listenerPath: '/run/agent.sock' }; }, /^linux\.seccomp\.listenerPath: /],
  ['shared mount propagation', (s) => { s.linux.rootfsPropagation = 'rshared'; }, /^linux\.rootfsPropagation: "rshared"/],
  ['a systemd property', (s) => { s.annotations = { 'org.systemd.property.Delegate': 'true' }; }, /^annotations\.org\.systemd\.property\.Delegate: /],
  ['an unknown top-level field', (s) => { s.vm = { hypervisor: { path: '/bin/sh' } }; }, /^vm: not a field/],
];

for (const [what, change, reason] of REFUSED) {
  test(`refused, naming it: ${what}`, (t) => {
    const problems = checkContainerSpec(spec(change), VOLUMES);
    t.is(problems.length, 1, problems.join('\n'));
    t.regex(problems[0]!, reason);
  });
}

test('every difference is named at once, in the refusal', (t) => {
  const bad = spec((s) => {
    s.hooks = { prestart: [{ path: '/bin/sh' }] };
    s.mounts = [...RUNC_1_1.mounts, { destination: '/host', type: 'bind', source: '/', options: ['rbind'] }];
    s.linux.namespaces = [{ type: 'pid', path: '/proc/1/ns/pid' }, { type: 'network' }, { type: 'ipc' }, { type: 'uts' }, { type: 'time' }];
  });
  const err = t.throws(() => requireRoamSpec(bad, VOLUMES, 'migration m-x-000001: the configuration of container web'), { instanceOf: RoamError });
  t.is(err.code, 'INPUT_INVALID');
  t.regex(err.message, /^migration m-x-000001: the configuration of container web is not one roam builds: /);
  for (const field of ['hooks.prestart', 'mounts[7]', 'linux.namespaces[0] ("pid"): path', 'linux.namespaces[4] ("time")', 'linux.namespaces: mount is missing']) {
    t.true(err.message.includes(field), `names ${field}: ${err.message}`);
  }
  t.is((err.details.problems as string[]).length, 5);
  t.notThrows(() => requireRoamSpec(spec(), VOLUMES, 'x'));
});

test("a target refuses a peer's configuration before building anything", async (t) => {
  const stateDir = mkdtempSync(join(tmpdir(), 'roam-spec-rules-'));
  t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));
  const touched: string[] = [];
  const manager = new Proxy({}, { get: (_o, key) => { touched.push(String(key)); throw new Error(`the manager was used: ${String(key)}`); } }) as EndpointManager;
  const target = new MigrationTarget(manager, stateDir, async () => undefined);
  const req: PrepareRequest = {
    id: 'm-x-000001', mode: 'stop-copy', handover: 'full', name: 'web', ip: '10.244.1.1', prefixLength: 16, mac: '02:72:0a:f4:01:01',
    generation: 2, command: ['/bin/echo-server'], createdAt: '2026-01-01T00:00:00.000Z',
    container: { image: 'a'.repeat(64), spec: spec((s) => { s.hooks = { prestart: [{ path: '/bin/sh', args: ['sh', '-c', 'touch /pwned'] }] }; }), volumes: VOLUMES },
  };
  const err = await t.throwsAsync(target.prepare(req, undefined), { instanceOf: RoamError });
  t.is(err.code, 'INPUT_INVALID');
  t.regex(err.message, /container web is not one roam builds: hooks\.prestart: roam runs no hooks/);
  t.deepEqual(touched, [], 'nothing asked of the manager: no namespace, no record, no folders');
  t.deepEqual(readdirSync(stateDir).filter((f) => f !== 'takeovers'), [], 'nothing written in the state directory');
  t.is(target.inFlight(), 0);
});
