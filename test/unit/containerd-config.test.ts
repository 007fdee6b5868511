/**
 * containerd's configuration as roam writes it, read back by containerd
 * itself (`containerd config dump` parses and fills it): every path is the
 * node's own, the CRI plugin knows the `roam` handler with roam's runc, and
 * CNI looks in Debian's plugin folder.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { containerdConfig, type ContainerdLayout } from '../../src/container/containerd-config.js';

const layout = (dir: string): ContainerdLayout => ({
  major: 1, root: `${dir}/root`, state: `${dir}/state`, address: `${dir}/containerd.sock`, runcRoot: `${dir}/runc`,
  cniBinDir: '/usr/lib/cni', cniConfDir: `${dir}/cni`, wrapper: '/usr/local/bin/roam-runc', sandboxImage: 'registry.k8s.io/pause:3.6',
});

test('containerd 1.6 reads the version 2 config as written: its own paths, the roam handler, Debian\'s CNI plugins', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'roam-containerd-config-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'config.toml');
  writeFileSync(file, containerdConfig(layout(dir)));
  const dumped = execFileSync('/usr/bin/containerd', ['--config', file, 'config', 'dump'], { encoding: 'utf8' });
  for (const line of [
    `root = "${dir}/root"`, `state = "${dir}/state"`, `address = "${dir}/containerd.sock"`,
    '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.roam]', 'BinaryName = "/usr/local/bin/roam-runc"', `Root = "${dir}/runc"`,
    'pod_annotations = ["roam.dev/*"]', 'bin_dir = "/usr/lib/cni"', `conf_dir = "${dir}/cni"`, 'netns_mounts_under_state_dir = true',
  ]) t.true(dumped.includes(line), `${line} in:\n${dumped}`);
  // No host-wide default left where two containerds on one host would meet.
  for (const shared of ['"/var/lib/containerd', '"/run/containerd/containerd.sock"', '"/opt/containerd"', '"/run/containerd/debug.sock"']) {
    t.false(dumped.includes(shared), `${shared} is not used`);
  }
});

test('without a wrapper there is no roam handler; containerd 2 gets the version 3 layout', (t) => {
  const { wrapper: _w, ...plain } = layout('/n');
  t.false(containerdConfig(plain).includes('runtimes.roam'));
  const v3 = containerdConfig({ ...layout('/n'), major: 2 });
  t.regex(v3, /^version = 3$/m);
  t.regex(v3, /\[plugins\.'io\.containerd\.cri\.v1\.runtime'\.containerd\.runtimes\.roam\.options\]\n {2}BinaryName = "\/usr\/local\/bin\/roam-runc"/);
  t.regex(v3, /bin_dirs = \["\/usr\/lib\/cni"\]/);
  t.regex(v3, /\[plugins\.'io\.containerd\.nri\.v1\.nri'\]\n {2}disable = true/);
});
