import test from 'ava';
import { addressAt, formatIp, parseIp, parsePrefix, prefixContains, prefixWithin, formatPrefix } from '../../src/net/ip.js';
import { isEndpointMac, macForIp, parseMac } from '../../src/net/mac.js';

test('IPv4 and IPv6 round-trip through bytes', (t) => {
  for (const ip of ['10.244.1.2', '0.0.0.0', '255.255.255.255', '::1', 'fd00::1:2', '2001:db8::', '::', '1:2:3:4:5:6:7:8']) {
    t.is(formatIp(parseIp(ip)), ip);
  }
  t.is(formatIp(parseIp('fd00:0:0:0:0:0:0:1')), 'fd00::1');
  t.is(formatIp(parseIp('::ffff:10.0.0.1')), '::ffff:a00:1');
});

test('prefixes mask host bits and answer containment', (t) => {
  const p = parsePrefix('10.244.7.9/16');
  t.is(formatPrefix(p), '10.244.0.0/16');
  t.true(prefixContains(p, parseIp('10.244.255.1')));
  t.false(prefixContains(p, parseIp('10.245.0.1')));
  t.false(prefixContains(p, parseIp('fd00::1')));
  t.true(prefixWithin(parsePrefix('10.244.3.0/24'), p));
  t.false(prefixWithin(parsePrefix('10.0.0.0/8'), p));
  t.is(formatIp(addressAt(parsePrefix('10.244.1.0/24'), 5n)), '10.244.1.5');
  t.is(formatIp(addressAt(parsePrefix('fd00::/64'), 258n)), 'fd00::102');
});

test('bad prefixes are refused with the reason', (t) => {
  t.throws(() => parsePrefix('10.0.0.0'), { message: /missing \/length/ });
  t.throws(() => parsePrefix('10.0.0.0/33'), { message: /0\.\.32/ });
  t.throws(() => parsePrefix('nope/8'), { message: /not an IP/ });
});

test('endpoint MACs derive from the IP, are locally administered, and are recognisable', (t) => {
  t.is(macForIp('10.244.1.2'), '02:72:0a:f4:01:02');
  t.is(macForIp('10.244.1.2'), macForIp('10.244.1.2'));
  t.not(macForIp('10.244.1.2'), macForIp('10.244.1.3'));
  t.is(parseMac(macForIp('10.0.0.1'))[0]! & 0x03, 0x02); // local, unicast
  t.true(isEndpointMac(macForIp('10.0.0.1')));
  t.false(isEndpointMac('00:00:00:00:00:00'));
});
