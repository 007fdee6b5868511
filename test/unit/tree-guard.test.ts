/**
 * Writes a peer asks for into a container's tree never leave it
 * (container/tree-guard.ts): archives and removal lists made to escape
 * through symlinks, hard links and device nodes are refused with the file
 * outside untouched, and a real tree with symlinks, hard links and
 * whiteouts still goes through the proactive copy and the frozen delta.
 * Real tar, in temporary folders.
 */
import test from 'ava';
import { createReadStream, existsSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { RoamError } from '../../src/errors/roam-error.js';
import { checkMembers, unpackChecked, unpackUpload, writingTree } from '../../src/container/tree-guard.js';
import { applyDelta, scanTree, treeDelta, writeDelta } from '../../src/container/tree-sync.js';
import { parseTarListing, tarCreateFile, tarCreateStream, tarList } from '../../src/sys/tar.js';

/** A scratch folder with a tree (the target's copy), a victim folder outside it, and a place for archives. */
function scratch(t: { teardown: (fn: () => void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'roam-tree-guard-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const victim = mkdtempSync(join(tmpdir(), 'roam-victim-'));
  t.teardown(() => rmSync(victim, { recursive: true, force: true }));
  writeFileSync(join(victim, 'keep'), 'mine');
  const tree = join(dir, 'tree');
  mkdirSync(tree);
  let n = 0;
  return { dir, victim, tree, archive: () => join(dir, `a${n++}.tar`), spool: () => join(dir, `spool${n++}.tar`) };
}

/** What an upload leaves outside the tree: the victim's folder as it was. */
function untouched(t: { deepEqual: (a: unknown, b: unknown, m?: string) => void; is: (a: unknown, b: unknown) => void }, victim: string): void {
  t.deepEqual(readdirSync(victim), ['keep'], 'nothing was written into the folder outside the tree');
  t.is(readFileSync(join(victim, 'keep'), 'utf8'), 'mine');
}

/** A hand-made ustar archive: members tar would never write from a real tree. */
function ustar(entries: { name: string; type: '0' | '1' | '2' | '3' | '4' | '5' | '6'; link?: string; data?: string; dev?: [number, number] }[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const h = Buffer.alloc(512);
    const data = Buffer.from(e.data ?? '');
    const put = (at: number, len: number, s: string) => h.write(s, at, len, 'latin1');
    const octal = (at: number, len: number, v: number) => put(at, len, v.toString(8).padStart(len - 1, '0') + '\0');
    put(0, 100, e.name);
    octal(100, 8, e.type === '5' ? 0o755 : 0o644);
    octal(108, 8, 0);
    octal(116, 8, 0);
    octal(124, 12, data.length);
    octal(136, 12, 1700000000);
    put(148, 8, '        ');
    put(156, 1, e.type);
    put(157, 100, e.link ?? '');
    put(257, 6, 'ustar\0');
    put(263, 2, '00');
    octal(329, 8, e.dev?.[0] ?? 0);
    octal(337, 8, e.dev?.[1] ?? 0);
    let sum = 0;
    for (const b of h) sum += b;
    put(148, 8, sum.toString(8).padStart(6, '0') + '\0 ');
    blocks.push(h, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** Unpacks `file` as the proactive copy does: streamed in, spooled, checked, unpacked. */
function upload(s: ReturnType<typeof scratch>, file: string): Promise<void> {
  return unpackUpload(s.tree, createReadStream(file), s.spool(), () => undefined);
}

test('two uploads: a symlink out of the tree, then a file below it, is refused and the folder outside stays as it was', async (t) => {
  const s = scratch(t);
  const first = join(s.dir, 'first');
  mkdirSync(first);
  symlinkSync(s.victim, join(first, 'evil'));
  const a1 = s.archive();
  await tarCreateFile(first, ['evil'], a1);
  await upload(s, a1);
  t.is(readlinkSync(join(s.tree, 'evil')), s.victim, 'the symlink itself is fine: it is only never followed');

  const second = join(s.dir, 'second');
  mkdirSync(join(second, 'evil'), { recursive: true });
  writeFileSync(join(second, 'evil', 'pwned'), 'root was here');
  const a2 = s.archive();
  await tarCreateFile(second, ['evil/pwned'], a2);
  const err = await t.throwsAsync(upload(s, a2), { instanceOf: RoamError });
  t.is(err?.code, 'INPUT_INVALID');
  t.regex(err?.message ?? '', /"evil\/pwned".*parent "evil" is a symlink in the tree/);
  untouched(t, s.victim);
  t.deepEqual(readdirSync(s.dir).filter((f) => f.startsWith('spool')), [], 'the spooled upload is gone');

  // The same archive applied as a frozen delta is refused the same way.
  writeFileSync(join(s.dir, 'deleted.json'), '[]');
  const e2 = await t.throwsAsync(applyDelta(s.tree, { archive: a2, deleted: join(s.dir, 'deleted.json') }), { instanceOf: RoamError });
  t.is(e2?.code, 'INPUT_INVALID');
  untouched(t, s.victim);

  // With the directory itself in the archive, the symlink is replaced by a real directory, never followed.
  const a3 = s.archive();
  await tarCreateFile(second, ['evil', 'evil/pwned'], a3);
  await upload(s, a3);
  t.true(lstatSync(join(s.tree, 'evil')).isDirectory());
  t.is(readFileSync(join(s.tree, 'evil', 'pwned'), 'utf8'), 'root was here');
  untouched(t, s.victim);
});

test('one archive: a member below a symlink of the same archive is refused', async (t) => {
  const s = scratch(t);
  for (const link of [s.victim, 'sub', '.']) {
    const a = s.archive();
    writeFileSync(a, ustar([{ name: 'evil', type: '2', link }, { name: 'evil/pwned', type: '0', data: 'x' }]));
    const err = await t.throwsAsync(upload(s, a), { instanceOf: RoamError });
    t.is(err?.code, 'INPUT_INVALID');
    t.regex(err?.message ?? '', /"evil\/pwned".*parent "evil" is a symlink in the archive/);
  }
  untouched(t, s.victim);
  t.deepEqual(readdirSync(s.tree), [], 'a refused archive writes nothing');
});

test('a symlink where a file arrives is replaced, not written through', async (t) => {
  const s = scratch(t);
  symlinkSync(join(s.victim, 'keep'), join(s.tree, 'f'));
  const a = s.archive();
  writeFileSync(a, ustar([{ name: 'f', type: '0', data: 'new' }]));
  await upload(s, a);
  t.false(lstatSync(join(s.tree, 'f')).isSymbolicLink());
  t.is(readFileSync(join(s.tree, 'f'), 'utf8'), 'new');
  untouched(t, s.victim);
});

test('hard links from a peer are refused unless they join two members of the same archive', async (t) => {
  const s = scratch(t);
  const cases: [ReturnType<typeof ustar>, RegExp][] = [
    // tar strips the leading / of a link's target as it reads it (and as it unpacks): a path in the tree, not in the archive.
    [ustar([{ name: 'h', type: '1', link: join(s.victim, 'keep') }]), /"h": a hard link to "tmp\/roam-victim-\w+\/keep", which is not a file earlier in the archive/],
    // Likewise a leading ../ (tar unpacks the same stripped name it lists, checked here: a link to x is x of the tree).
    [ustar([{ name: 'h', type: '1', link: '../../x' }]), /"h": a hard link to "x", which is not a file earlier in the archive/],
    [ustar([{ name: 'h', type: '1', link: 'etc/passwd' }]), /"h": a hard link to "etc\/passwd", which is not a file earlier in the archive/],
    [ustar([{ name: 'd', type: '5' }, { name: 'h', type: '1', link: 'd' }]), /not a file earlier in the archive/],
  ];
  for (const [bytes, why] of cases) {
    const a = s.archive();
    writeFileSync(a, bytes);
    const err = await t.throwsAsync(upload(s, a), { instanceOf: RoamError });
    t.is(err?.code, 'INPUT_INVALID');
    t.regex(err?.message ?? '', why);
  }
  // A file already in the tree (from an earlier upload) is not "earlier in the archive" either.
  writeFileSync(join(s.tree, 'old'), 'old');
  const a = s.archive();
  writeFileSync(a, ustar([{ name: 'h', type: '1', link: 'old' }]));
  await t.throwsAsync(upload(s, a), { instanceOf: RoamError, message: /not a file earlier in the archive/ });
  untouched(t, s.victim);
});

test('device nodes from a peer are refused; the overlay whiteout (c 0,0) is not one of them', async (t) => {
  const s = scratch(t);
  for (const [type, dev] of [['3', [1, 3]], ['4', [8, 0]], ['3', [0, 1]]] as const) {
    const a = s.archive();
    writeFileSync(a, ustar([{ name: 'dev/null', type, dev: [dev[0], dev[1]] }]));
    const err = await t.throwsAsync(upload(s, a), { instanceOf: RoamError });
    t.is(err?.code, 'INPUT_INVALID');
    t.regex(err?.message ?? '', new RegExp(`"dev/null": a device node \\(${type === '3' ? 'c' : 'b'} ${dev[0]},${dev[1]}\\)`));
  }
  t.false(existsSync(join(s.tree, 'dev')));
  const a = s.archive();
  writeFileSync(a, ustar([{ name: 'gone', type: '3', dev: [0, 0] }, { name: 'pipe', type: '6' }]));
  await upload(s, a);
  t.true(lstatSync(join(s.tree, 'gone')).isCharacterDevice());
  t.true(lstatSync(join(s.tree, 'pipe')).isFIFO());
});

test('absolute names, .., a name twice and unknown types are refused', async (t) => {
  const s = scratch(t);
  const cases: [Buffer, RegExp][] = [
    [ustar([{ name: '../x', type: '0' }]), /"..\/x": a path that goes up/],
    [ustar([{ name: 'a/../../x', type: '0' }]), /a path that goes up/],
    [ustar([{ name: 'x', type: '2', link: 'y' }, { name: 'x', type: '5' }]), /"x": the archive holds this path twice/],
    [ustar([{ name: 'f', type: '0' }, { name: 'f/g', type: '0' }]), /"f\/g": its parent "f" is a file in the archive/],
  ];
  for (const [bytes, why] of cases) {
    const a = s.archive();
    writeFileSync(a, bytes);
    await t.throwsAsync(upload(s, a), { instanceOf: RoamError, message: why });
  }
  // tar strips a leading / as it lists, so the check sees what tar would unpack; a listing that keeps it is refused.
  t.throws(() => checkMembers([{ type: '-', name: '/etc/passwd' }], () => 'absent'), { instanceOf: RoamError, message: /an absolute path/ });
  t.throws(() => checkMembers([{ type: 'V', name: 'label' }], () => 'absent'), { instanceOf: RoamError, message: /of type "V"/ });
  t.throws(() => parseTarListing('V--------- 0/0 0 2024-01-01 00:00 "label"--Volume Header--\n'), { instanceOf: RoamError });
  t.deepEqual(readdirSync(s.tree), []);
});

test('a removal through a symlinked parent is refused; the symlink itself can go', async (t) => {
  const s = scratch(t);
  symlinkSync(s.victim, join(s.tree, 'link'));
  const empty = s.archive();
  writeFileSync(empty, ustar([]));
  const deleted = join(s.dir, 'deleted.json');
  for (const path of ['link/keep', 'link/./keep', 'link/']) {
    writeFileSync(deleted, JSON.stringify(path === 'link/' ? ['link/keep/x'] : [path]));
    const err = await t.throwsAsync(applyDelta(s.tree, { archive: empty, deleted }), { instanceOf: RoamError });
    t.is(err?.code, 'INPUT_INVALID');
    t.regex(err?.message ?? '', /parent "link" is a symlink in the tree/);
    untouched(t, s.victim);
  }
  writeFileSync(deleted, JSON.stringify(['link', 'never/was']));
  await applyDelta(s.tree, { archive: empty, deleted });
  t.false(existsSync(join(s.tree, 'link')));
  untouched(t, s.victim);
});

test('writes into one tree take turns', async (t) => {
  const order: string[] = [];
  const slow = (name: string, ms: number) => writingTree('/nowhere/tree', async () => {
    order.push(`${name}+`);
    await new Promise((r) => setTimeout(r, ms));
    order.push(`${name}-`);
  });
  const failing = writingTree('/nowhere/tree', async () => {
    order.push('x');
    throw new Error('boom');
  });
  await Promise.all([slow('a', 30), failing.catch(() => undefined), slow('b', 1), writingTree('/nowhere/other', async () => order.push('other'))]);
  t.deepEqual(order.filter((o) => o !== 'other'), ['x', 'a+', 'a-', 'b+', 'b-'], 'one at a time, in order; a failure does not stop the next');
});

test('an upload the tree no longer takes writes nothing', async (t) => {
  const s = scratch(t);
  const a = s.archive();
  writeFileSync(a, ustar([{ name: 'f', type: '0', data: 'x' }]));
  await t.throwsAsync(unpackUpload(s.tree, createReadStream(a), s.spool(), () => {
    throw new RoamError('CONFLICT', 'restoring');
  }), { message: 'restoring' });
  t.deepEqual(readdirSync(s.tree), []);
  t.deepEqual(readdirSync(s.dir).filter((f) => f.startsWith('spool')), []);
});

/** A small busybox-like root filesystem: links for bin and lib, absolute and relative symlinks, hard links, a fifo, a whiteout, odd names. */
function rootfsLike(root: string): void {
  for (const d of ['usr/bin', 'usr/lib', 'etc', 'opt/app', 'var/empty']) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, 'usr/bin/busybox'), 'BUSYBOX');
  symlinkSync('usr/bin', join(root, 'bin'));
  symlinkSync('usr/lib', join(root, 'lib'));
  for (const a of ['sh', 'ls', 'cat']) symlinkSync('busybox', join(root, 'usr/bin', a));
  symlinkSync('/usr/bin/busybox', join(root, 'usr/bin/abs'));
  symlinkSync('../../etc/hostname', join(root, 'usr/lib/up'));
  writeFileSync(join(root, 'usr/lib/libc.so'), 'LIBC');
  writeFileSync(join(root, 'etc/hostname'), 'box\n');
  linkSync(join(root, 'etc/hostname'), join(root, 'etc/hostname.hard'));
  writeFileSync(join(root, 'opt/app/data'), 'data');
  writeFileSync(join(root, 'etc/we ird -> "x"\ny'), 'odd');
  writeFileSync(join(root, 'etc/naïve €'), 'utf8');
  execFileSync('mkfifo', [join(root, 'var/fifo')]);
  execFileSync('mknod', [join(root, 'etc/whiteout'), 'c', '0', '0']);
}

/** Each entry's kind, mode, size, content or target: what a copy must match. */
function contents(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [path, st] of scanTree(root)) {
    const full = join(root, path);
    const what = st.kind === 'file' ? readFileSync(full, 'utf8') : st.kind === 'symlink' ? `-> ${readlinkSync(full)}` : '';
    out[path] = `${st.kind} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${what}`;
  }
  return out;
}

test('a real tree with symlinks, hard links and a whiteout goes through the proactive copy and the frozen delta', async (t) => {
  const s = scratch(t);
  const src = join(s.dir, 'src');
  rootfsLike(src);

  // The proactive copy, as container-files.ts sends it, twice (the tree upload can be repeated).
  const first = scanTree(src);
  for (let i = 0; i < 2; i++) {
    const tar = tarCreateStream(src, [...first.keys()], { live: true });
    await Promise.all([unpackUpload(s.tree, tar.stream, s.spool(), () => undefined), tar.done]);
  }
  t.deepEqual(contents(s.tree), contents(src));
  t.is(lstatSync(join(s.tree, 'etc/hostname')).ino, lstatSync(join(s.tree, 'etc/hostname.hard')).ino, 'a hard link arrives as one');

  // What a container does while it runs: write, add, delete, swap a symlink for a folder and a folder for a symlink.
  writeFileSync(join(src, 'usr/lib/libc.so'), 'LIBC v2');
  writeFileSync(join(src, 'usr/lib/new.so'), 'NEW');
  rmSync(join(src, 'etc/hostname.hard'));
  rmSync(join(src, 'lib'));
  mkdirSync(join(src, 'lib'));
  writeFileSync(join(src, 'lib/real'), 'REAL');
  rmSync(join(src, 'opt'), { recursive: true });
  symlinkSync('usr', join(src, 'opt'));
  writeFileSync(join(src, 'etc/new'), 'n');
  linkSync(join(src, 'etc/new'), join(src, 'etc/new.hard'));

  const delta = treeDelta(first, scanTree(src));
  const files = { archive: s.archive(), deleted: join(s.dir, 'deleted.json') };
  await writeDelta(src, delta, files);
  t.true((await tarList(files.archive)).some((m) => m.type === 'h'), 'the delta carries a hard link');
  await applyDelta(s.tree, files);
  t.deepEqual(contents(s.tree), contents(src));
  t.is(lstatSync(join(s.tree, 'etc/new')).ino, lstatSync(join(s.tree, 'etc/new.hard')).ino);

  // Unpacking checked archives in place also works without an upload.
  const again = s.archive();
  await tarCreateFile(src, [...scanTree(src).keys()], again);
  await writingTree(s.tree, () => unpackChecked(s.tree, again));
  t.deepEqual(contents(s.tree), contents(src));
});

test("tar's listing is read byte for byte: quotes, newlines, arrows and non-ASCII names", (t) => {
  const listing = [
    'lrwxrwxrwx 0/0               0 2026-12-03 20:25 "./bin/we ird -> \\"x\\"\\ny" -> "/abs/target"',
    'hrw-r--r-- 0/0               0 2026-12-03 20:25 "./d/hl" link to "./d/f"',
    'crw-r--r-- 0/0             0,0 2026-12-03 20:25 "./wh"',
    '-rw-r--r-- 1000/1000         3 2026-12-03 20:25 "na\\303\\257ve"',
  ].join('\n');
  t.deepEqual(parseTarListing(listing), [
    { type: 'l', name: './bin/we ird -> "x"\ny', link: '/abs/target' },
    { type: 'h', name: './d/hl', link: './d/f' },
    { type: 'c', name: './wh', device: { major: 0, minor: 0 } },
    { type: '-', name: Buffer.from('naïve').toString('latin1') },
  ]);
  for (const bad of ['-rw-r--r-- 0/0 3 2026-12-03 20:25 "a" trailing', '-rw-r--r-- 0/0 3 2026-12-03 20:25 "unterminated', '-rw-r--r-- 0/0 3 2026-12-03 20:25 "bad\\q"', 'garbage']) {
    t.throws(() => parseTarListing(bad), { instanceOf: RoamError }, bad);
  }
});
