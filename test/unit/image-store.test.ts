/**
 * Container images on a node: one a peer sends is kept only if it hashes to
 * its id and every member stays inside its root filesystem; images no
 * endpoint uses go once they have been unused for the retention. Real tar,
 * real files.
 */
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { ImageStore } from '../../src/container/image-store.js';
import { RoamError } from '../../src/errors/roam-error.js';

function folder(t: import('ava').ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'roam-image-store-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A small root filesystem's archive, and its id. */
function archiveOf(dir: string, marker: string): { archive: Buffer; id: string } {
  const rootfs = join(dir, `rootfs-${marker}`);
  mkdirSync(join(rootfs, 'bin'), { recursive: true });
  writeFileSync(join(rootfs, 'bin', 'marker'), marker);
  const archive = execFileSync('tar', ['-C', rootfs, '-cf', '-', '.']);
  return { archive, id: createHash('sha256').update(archive).digest('hex') };
}

/** An archive written member by member with Python's tarfile: what a hostile peer could send. */
function hostileArchive(members: string[]): Buffer {
  return execFileSync('python3', ['-c', `
import io, sys, tarfile
out = io.BytesIO()
with tarfile.open(fileobj=out, mode='w') as t:
    def add(name, type=tarfile.REGTYPE, data=b'x', link='', major=0, minor=0):
        i = tarfile.TarInfo(name); i.type = type; i.linkname = link; i.devmajor = major; i.devminor = minor
        i.size = len(data) if type == tarfile.REGTYPE else 0
        t.addfile(i, io.BytesIO(data) if type == tarfile.REGTYPE else None)
${members.map((m) => `    ${m}`).join('\n')}
sys.stdout.buffer.write(out.getvalue())
`]);
}

test('an image a peer sends is kept when it hashes to its id; one that does not is refused and leaves nothing', async (t) => {
  const dir = folder(t);
  const store = new ImageStore(join(dir, 'state'));
  const { archive, id } = archiveOf(dir, 'one');
  t.is(await store.receive(id, Readable.from([archive])), id);
  t.true(store.has(id));
  t.is(readFileSync(join(store.rootfs(id), 'bin', 'marker'), 'utf8'), 'one');
  const other = archiveOf(dir, 'two');
  const err = await t.throwsAsync(store.receive('f'.repeat(64), Readable.from([other.archive])), { instanceOf: RoamError });
  t.regex(err?.message ?? '', new RegExp(`image f{64}: the archive received hashes to ${other.id}`));
  t.deepEqual(readdirSync(store.root), [id], 'no staging folder, no image of the wrong id');
});

test('an image whose members would leave its root filesystem, or carry a device node, is refused before a member is written, and nothing outside changes', async (t) => {
  const dir = folder(t);
  const store = new ImageStore(join(dir, 'state'));
  const outside = join(dir, 'outside');
  mkdirSync(outside);
  const cases: [string, string[], RegExp][] = [
    ['dotdot', ["add('bin/ok')", "add('../../outside/pwned')"], /\.\./],
    ['absolute', [`add('${outside}/pwned')`], /absolute/],
    ['symlink-parent', [`add('evil', tarfile.SYMTYPE, link='${outside}')`, "add('evil/pwned')"], /symlink/],
    ['device', ["add('dev/sda', tarfile.BLKTYPE, major=8, minor=0)"], /device/],
    ['hardlink-out', ["add('passwd', tarfile.LNKTYPE, link='/etc/passwd')"], /link/],
  ];
  for (const [what, members, reason] of cases) {
    const archive = hostileArchive(members);
    const id = createHash('sha256').update(archive).digest('hex');
    const err = await t.throwsAsync(store.receive(id, Readable.from([archive])), { instanceOf: RoamError }, what);
    t.regex(err?.message ?? '', reason, what);
    t.false(store.has(id), what);
  }
  t.deepEqual(readdirSync(outside), [], 'nothing written outside');
  t.deepEqual(existsSync(store.root) ? readdirSync(store.root) : [], [], 'no image, no staging folder');
});

test('images no endpoint uses go once unused for the retention; those in use, those used lately, and another process\'s staging stay', async (t) => {
  const dir = folder(t);
  const store = new ImageStore(join(dir, 'state'));
  const ids: string[] = [];
  for (const marker of ['used', 'idle', 'recent']) {
    const { archive, id } = archiveOf(dir, marker);
    ids.push(await store.receive(id, Readable.from([archive])));
  }
  const [used, idle, recent] = ids as [string, string, string];
  const hourAgo = new Date(Date.now() - 2 * 3600000);
  for (const id of ids) utimesSync(join(store.root, id, 'complete'), hourAgo, hourAgo);
  store.touch(recent);
  mkdirSync(join(store.root, '.incoming-999999999-1-abc'));
  mkdirSync(join(store.root, `.incoming-${process.pid}-1-abc`));
  t.deepEqual(store.collect(new Set([used]), 3600000), [idle]);
  t.true(store.has(used) && store.has(recent));
  t.false(existsSync(join(store.root, idle)));
  t.deepEqual(readdirSync(store.root).filter((e) => e.startsWith('.incoming')), [`.incoming-${process.pid}-1-abc`], 'a dead process\'s staging goes; this one\'s stays');
});
