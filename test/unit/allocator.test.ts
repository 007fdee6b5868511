import test from 'ava';
import { allocateIp } from '../../src/endpoint/allocator.js';
import { RoamError } from '../../src/errors/roam-error.js';

const base = { subnet: '10.244.0.0/16', range: '10.244.2.0/24', requested: undefined };

test('allocates the lowest free address of the node range', (t) => {
  t.is(allocateIp({ ...base, taken: new Set() }), '10.244.2.1');
  t.is(allocateIp({ ...base, taken: new Set(['10.244.2.1', '10.244.2.2']) }), '10.244.2.3');
});

test('a requested address must be in the subnet, not reserved, and free cluster-wide', (t) => {
  t.is(allocateIp({ ...base, taken: new Set(), requested: '10.244.9.9' }), '10.244.9.9');
  const outside = t.throws(() => allocateIp({ ...base, taken: new Set(), requested: '10.1.0.1' }), { instanceOf: RoamError });
  t.is(outside.code, 'INPUT_INVALID');
  t.regex(outside.message, /ip: 10\.1\.0\.1 is outside the overlay subnet/);
  const taken = t.throws(() => allocateIp({ ...base, taken: new Set(['10.244.9.9']), requested: '10.244.9.9' }), { instanceOf: RoamError });
  t.is(taken.code, 'CONFLICT');
  t.throws(() => allocateIp({ ...base, taken: new Set(), requested: '10.244.0.0' }), { message: /network or broadcast/ });
  t.throws(() => allocateIp({ ...base, taken: new Set(), requested: '10.244.255.255' }), { message: /network or broadcast/ });
  t.throws(() => allocateIp({ ...base, taken: new Set(), requested: 'banana' }), { message: /not an IP address/ });
});

test('an exhausted range says so', (t) => {
  const taken = new Set(Array.from({ length: 256 }, (_, i) => `10.244.2.${i}`));
  const err = t.throws(() => allocateIp({ ...base, taken }), { instanceOf: RoamError });
  t.is(err.code, 'ADDRESS_EXHAUSTED');
});
