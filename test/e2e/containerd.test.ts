/**
 * The testbed's containerds (the ground the pods' tests stand on): one per
 * node, in that node's namespace, each with its own root, state, socket and
 * runc state, answering with Debian's containerd and its CRI plugin loaded;
 * `testbed up` again keeps them, `testbed down` ends them and leaves nothing.
 */
import test from 'ava';
import { existsSync } from 'node:fs';
import { containerdPlugins, containerdVersion } from '../../src/sys/containerd.js';
import { netnsInode, processesInNetns } from '../../src/sys/proc.js';
import { testbedUp } from '../../src/testbed/up.js';
import { downClean, uniqueTestbedName } from '../helpers/testbed.js';
import { requireRoot } from '../helpers/root.js';

const name = uniqueTestbedName();
const up = () => testbedUp({ name, nodes: 2, underlayRate: undefined, syncIntervalMs: 500, containerd: true, say: () => undefined });

test.before(() => requireRoot());
test.after.always(() => downClean(name));

test.serial("each node runs its own containerd in its own namespace, with its own paths, and containerd's CRI plugin answers", async (t) => {
  const tb = await up();
  const addresses = new Set<string>();
  for (const n of tb.nodes) {
    const c = n.containerd!;
    t.truthy(c, `${n.name} has a containerd`);
    t.true(c.address.startsWith(`${n.stateDir.replace(/\/state$/, '')}/`), `${n.name}'s socket is in its folder: ${c.address}`);
    addresses.add(c.address);
    t.regex(await containerdVersion(c.address), /^1\.6\./);
    const cri = (await containerdPlugins(c.address)).find((p) => p.type === 'io.containerd.grpc.v1' && p.id === 'cri');
    t.is(cri?.status, 'ok', `${n.name}: the CRI plugin is loaded`);
    t.true(processesInNetns(new Set([netnsInode(n.netns)!])).includes(c.pid), `${n.name}'s containerd runs in ${n.name}'s namespace`);
  }
  t.is(addresses.size, tb.nodes.length, 'no two share a socket');
  // Up again: the same containerds.
  const again = await up();
  t.deepEqual(again.nodes.map((n) => n.containerd!.pid), tb.nodes.map((n) => n.containerd!.pid));
});

test.serial('testbed down ends every containerd and leaves nothing of them', async (t) => {
  const tb = await up();
  const pids = tb.nodes.map((n) => n.containerd!.pid);
  const sockets = tb.nodes.map((n) => n.containerd!.address);
  await downClean(name);
  for (const pid of pids) t.false(existsSync(`/proc/${pid}`), `containerd ${pid} ended`);
  for (const s of sockets) t.false(existsSync(s));
});
