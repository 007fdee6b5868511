/** What CRIU and the host say about the memory-transfer modes, probed for real. */
import test from 'ava';
import { LAZY_PAGES_PIPE_BYTES, probeMigrationCapabilities } from '../../src/checkpoint/capabilities.js';
import { hasCapSysResource, pipeMaxSize } from '../../src/sys/proc.js';
import { requireRoot } from '../helpers/root.js';

test.before(() => requireRoot());

test('the probe answers from CRIU and the host, and gives a reason for every mode it rules out', async (t) => {
  const caps = await probeMigrationCapabilities();
  t.is(typeof caps.preCopy, 'boolean');
  t.is(typeof caps.postCopy, 'boolean');
  const ruledOut = Number(!caps.preCopy) + Number(!caps.postCopy);
  t.true(caps.reasons.length >= ruledOut, caps.reasons.join('; '));
  if (!caps.preCopy) t.true(caps.reasons.some((r) => r.startsWith('pre-copy:')));
  if (!caps.postCopy) t.true(caps.reasons.some((r) => r.startsWith('post-copy:')));
  // setup.sh raised the pipe limit where the capability is missing, so the limit never rules post-copy out here.
  t.true(hasCapSysResource() || pipeMaxSize() >= LAZY_PAGES_PIPE_BYTES);
  t.false(caps.reasons.some((r) => r.includes('pipe-max-size')));
  t.log(JSON.stringify(caps));
});
