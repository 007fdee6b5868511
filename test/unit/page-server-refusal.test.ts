/** Reading a page server's CRIU log for a client it turned away at the TLS handshake. */
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pageServerRefusalIn } from '../../src/sys/criu/rpc.js';

function logWith(t: import('ava').ExecutionContext, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'roam-pslog-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'dump.log'), text);
  return join(dir, 'dump.log');
}

test('a refused client: its address and CRIU\'s reasons', (t) => {
  const log = logWith(t, [
    '(00.101000) Starting lazy pages server',
    '(00.102000) Accepted connection from 172.31.0.254:40112',
    '(00.103000) Error (criu/tls.c:221): Invalid certificate',
    '(00.103100) Error (criu/tls.c:206): The certificate is NOT trusted. The certificate issuer is unknown.',
    '(00.104000) Error (criu/cr-dump.c:1883): Lazy pages transfer FAILED.',
    '',
  ].join('\n'));
  t.deepEqual(pageServerRefusalIn(log), {
    from: '172.31.0.254',
    reason: 'Invalid certificate; The certificate is NOT trusted. The certificate issuer is unknown.',
  });
});

test('an IPv6 client, and a handshake that broke off', (t) => {
  const log = logWith(t, '(00.1) Accepted connection from fd00::fe:5511\n(00.2) Error (criu/tls.c:244): TLS handshake failed: The TLS connection was non-properly terminated.\n');
  t.deepEqual(pageServerRefusalIn(log), { from: 'fd00::fe', reason: 'TLS handshake failed: The TLS connection was non-properly terminated.' });
});

test('a served pull, another failure, or no log is no refusal', (t) => {
  t.is(pageServerRefusalIn(logWith(t, '(00.1) Accepted connection from 172.31.0.2:5000\n(00.2) TLS handshake completed\n(09.0) Lazy pages transfer finished successfully\n')), undefined);
  t.is(pageServerRefusalIn(logWith(t, '(00.1) Accepted connection from 172.31.0.2:5000\n(00.2) Error (criu/page-xfer.c:1223): Can\'t read pagemap from socket: Connection reset by peer\n')), undefined);
  t.is(pageServerRefusalIn(logWith(t, '(00.1) Error (criu/util.c:1200): Can\'t bind\n')), undefined);
  t.is(pageServerRefusalIn('/nonexistent/dump.log'), undefined);
});
