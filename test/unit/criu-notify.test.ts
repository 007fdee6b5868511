/** CRIU's notification names onto the typed notify, and notifies composed in turn. */
import test from 'ava';
import { composeNotify, dispatchNotify, type CriuNotify } from '../../src/checkpoint/notify.js';

test("CRIU's action names reach their methods; names it does not know, and points nobody listens at, are passed", async (t) => {
  const seen: string[] = [];
  const notify: CriuNotify = {
    networkLock: () => void seen.push('lock'),
    postDump: async () => void seen.push('post-dump'),
    statusReady: () => void seen.push('ready'),
    orphanPtsMaster: () => void seen.push('pts'),
  };
  for (const name of ['pre-dump', 'network-lock', 'post-dump', 'status-ready', 'orphan-pts-master', 'query-ext-files', 'toString', 'unknown']) await dispatchNotify(notify, name);
  t.deepEqual(seen, ['lock', 'post-dump', 'ready', 'pts']);
  t.is(dispatchNotify(undefined, 'network-lock'), undefined);
});

test('composed notifies run in order, each awaited; one that fails stops the rest and fails the point', async (t) => {
  const seen: string[] = [];
  const slow: CriuNotify = { networkLock: async () => { await new Promise((r) => setTimeout(r, 20)); seen.push('first'); } };
  const second: CriuNotify = { networkLock: () => void seen.push('second'), postDump: () => { throw new Error('refused'); } };
  const third: CriuNotify = { postDump: () => void seen.push('third') };
  const notify = composeNotify(slow, undefined, second, third);
  await dispatchNotify(notify, 'network-lock');
  t.deepEqual(seen, ['first', 'second']);
  await t.throwsAsync(async () => dispatchNotify(notify, 'post-dump'), { message: 'refused' });
  t.deepEqual(seen, ['first', 'second']);
  t.is(notify.preRestore, undefined, 'a point nobody listens at stays absent');
});

test('a notify written as a class keeps its this', async (t) => {
  class Counter implements CriuNotify {
    n = 0;
    preResume(): void {
      this.n++;
    }
  }
  const c = new Counter();
  await dispatchNotify(composeNotify(c), 'pre-resume');
  await dispatchNotify(c, 'pre-resume');
  t.is(c.n, 2);
});
