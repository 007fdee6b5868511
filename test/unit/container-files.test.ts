import test from 'ava';
import { RoamError } from '../../src/errors/roam-error.js';
import { parseOciSpec, parseVolumeFlag, renderSpec, type OciSpec } from '../../src/container/spec.js';
import { safeRelative, treeDelta, type EntryStat, type TreeManifest } from '../../src/container/tree-sync.js';

function entry(kind: EntryStat['kind'], ctimeNs = 1n, size = 10n): EntryStat {
  return { kind, mode: 0o644, uid: 0, gid: 0, size, mtimeNs: ctimeNs, ctimeNs, ino: 1n };
}

test('the frozen delta sends what is new or changed, removes what went, and not what stayed', (t) => {
  const before: TreeManifest = new Map([
    ['same', entry('file')], ['grew', entry('file')], ['gone', entry('file')], ['olddir', entry('dir')], ['olddir/inner', entry('file')], ['flip', entry('file')],
  ]);
  const after: TreeManifest = new Map([
    ['same', entry('file')], ['grew', entry('file', 2n, 20n)], ['new', entry('file', 3n, 5n)], ['flip', entry('dir', 4n)],
  ]);
  const d = treeDelta(before, after);
  t.deepEqual(d.changed, ['grew', 'new', 'flip']);
  t.deepEqual(d.deleted.sort(), ['flip', 'gone', 'olddir'], 'a kind change is removed first; below a removed folder nothing is listed');
  t.is(d.bytes, 25);
});

test('without a copy beforehand, everything goes in the freeze', (t) => {
  const after: TreeManifest = new Map([['a', entry('dir')], ['a/b', entry('file', 1n, 7n)]]);
  t.deepEqual(treeDelta(new Map(), after), { changed: ['a', 'a/b'], deleted: [], bytes: 7 });
});

test('paths from a peer must stay inside the tree', (t) => {
  t.is(safeRelative('a/./b'), 'a/b');
  for (const bad of ['/etc/passwd', '../x', 'a/../../x', '', '.', 7]) t.throws(() => safeRelative(bad), { instanceOf: RoamError }, String(bad));
});

test('--volume takes HOST_DIR:CONTAINER_DIR, both absolute', (t) => {
  t.deepEqual(parseVolumeFlag('/srv/data:/data'), { source: '/srv/data', destination: '/data' });
  for (const bad of ['data', '/srv:data', 'srv:/data', '/srv:/', ':/data']) t.throws(() => parseVolumeFlag(bad), { message: /HOST_DIR:CONTAINER_DIR/ }, bad);
});

const base = (): OciSpec => parseOciSpec({
  ociVersion: '1.0.2', process: { args: ['/bin/app'], terminal: true }, root: { path: 'somewhere', readonly: true },
  mounts: [{ destination: '/proc', type: 'proc' }, { destination: '/data', type: 'tmpfs' }],
  linux: { namespaces: [{ type: 'pid' }, { type: 'network' }, { type: 'mount' }] }, extra: { kept: true },
}, 'test');

test("a node renders the base with its own namespace, volumes and CRIU options; the rest is the bundle's", (t) => {
  const spec = renderSpec(base(), { hostname: 'web', netns: '/run/n/web', criuConfig: '/s/criu.conf', volumes: [{ source: '/here/0', destination: '/data' }] });
  t.like(spec, { process: { args: ['/bin/app'], terminal: false }, root: { path: 'rootfs', readonly: false }, hostname: 'web' });
  t.deepEqual(spec.linux.namespaces, [{ type: 'pid' }, { type: 'mount' }, { type: 'network', path: '/run/n/web' }]);
  t.deepEqual(spec.annotations, { 'org.criu.config': '/s/criu.conf' });
  t.deepEqual(spec.mounts, [{ destination: '/proc', type: 'proc' }, { destination: '/data', type: 'bind', source: '/here/0', options: ['rbind', 'rw'] }], 'the volume replaces what the bundle mounted there');
  t.deepEqual((spec as unknown as { extra: unknown }).extra, { kept: true });
  t.is(base().root.path, 'somewhere', 'the base is not changed');
});

test('a bundle configuration without a program is refused, naming the field', (t) => {
  const err = t.throws(() => parseOciSpec({ ociVersion: '1', process: { args: [] }, root: { path: 'r' }, linux: { namespaces: [] } }, 'bundle /b/config.json'));
  t.regex(err.message, /bundle \/b\/config.json: process.args/);
});
