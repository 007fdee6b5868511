/**
 * Pacing another process's sockets from outside it (pidfd_getfd): the pull
 * of a post-copy migration is paced this way on CRIU's page server. The
 * listener is paced; a connection it accepts afterwards inherits the rate.
 * Loopback only, with a child process standing in for CRIU.
 */
import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { connect } from 'node:net';
import { paceTcp } from '../../src/sys/borrowed-tcp.js';
import { requireRoot } from '../helpers/root.js';
import { waitFor } from '../helpers/wait.js';

test.before(() => requireRoot());

/** ss's view of the sockets on `port`: "pacing_rate NOW/MAXbps" per socket. */
function maxPacingRates(port: number): string[] {
  const out = execFileSync('ss', ['-tinH', 'state', 'all', `( sport = :${port} )`], { encoding: 'utf8' });
  return [...out.matchAll(/pacing_rate \d+bps\/(\d+)bps/g)].map((m) => m[1]!);
}

test('a paced listener holds the connections it accepts to that rate; other ports are left alone', async (t) => {
  const server = "const net=require('net');for(const _ of [0,1])net.createServer(s=>s.resume()).listen(0,'127.0.0.1',function(){console.log(this.address().port)})";
  const child = spawn(process.execPath, ['-e', server], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.teardown(() => child.kill('SIGKILL'));
  const ports = await new Promise<number[]>((resolve) => {
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += String(d);
      const ps = out.trim().split('\n').filter(Boolean).map(Number);
      if (ps.length === 2) resolve(ps);
    });
  });
  const [paced, other] = ports as [number, number];
  t.is(paceTcp(child.pid!, paced, 125000), 1, 'one socket on that port: the listener');
  const c = connect(paced, '127.0.0.1');
  t.teardown(() => c.destroy());
  await new Promise((resolve) => c.once('connect', resolve));
  await waitFor('the accepted connection beside the listener', () => maxPacingRates(paced).length >= 2, 5000).catch(() => undefined);
  t.deepEqual(maxPacingRates(paced), ['1000000', '1000000'], 'listener and accepted connection: 1 Mbit/s');
  t.notDeepEqual(maxPacingRates(other), ['1000000'], 'the other listener is not paced');
});

test('a process that has ended paces nothing; a bad argument is refused', (t) => {
  t.is(paceTcp(2 ** 22 + 12345, 1, 1000), 0);
  t.throws(() => paceTcp(process.pid, 70000, 1000), { message: /tcpPace\(pid, localPort, bytesPerSecond\)/ });
});
