import test from 'ava';
import { chooseMode, FROZEN_BUDGET_MS } from '../../src/migration/mode-choice.js';

const MiB = 1048576;
const all = { preCopy: false, postCopy: true, reasons: ['pre-copy: CRIU reports no soft-dirty memory tracking on this kernel'] };
const noPostCopy = { preCopy: false, postCopy: false, reasons: ['post-copy: fs.pipe-max-size is 1048576 bytes and the agent lacks CAP_SYS_RESOURCE'] };

test('memory that moves within the budget goes with stop-copy, and the report says why', (t) => {
  const c = chooseMode({ memoryBytes: 8 * MiB, underlayMbit: 1000, rateSource: 'assumed', capabilities: all });
  t.is(c.chosen, 'stop-copy');
  t.is(c.memory_transfer_ms, 67);
  t.true(c.memory_transfer_ms <= FROZEN_BUDGET_MS);
  t.regex(c.reasons[0]!, /8\.0 MiB of memory moves in about 67 ms at 1000 Mbit\/s \(assumed\)/);
  t.regex(c.reasons.join('; '), /pre-copy: no soft-dirty/);
});

test('more memory goes post-copy where the node can run it, with its risk named', (t) => {
  const c = chooseMode({ memoryBytes: 1024 * MiB, underlayMbit: 1000, rateSource: 'configured', capabilities: all });
  t.is(c.chosen, 'post-copy');
  t.true(c.post_copy_available);
  t.regex(c.reasons[1]!, /needs the source node/);
});

test('a faster underlay moves more memory inside the budget', (t) => {
  t.is(chooseMode({ memoryBytes: 100 * MiB, underlayMbit: 10000, rateSource: 'configured', capabilities: all }).chosen, 'stop-copy');
  t.is(chooseMode({ memoryBytes: 100 * MiB, underlayMbit: 1000, rateSource: 'configured', capabilities: all }).chosen, 'post-copy');
});

test('without post-copy: streamed for large memory, stop-copy in between, and the probe\'s reason is quoted', (t) => {
  const large = chooseMode({ memoryBytes: 512 * MiB, underlayMbit: 1000, rateSource: 'configured', capabilities: noPostCopy });
  t.is(large.chosen, 'streamed');
  t.regex(large.reasons[1]!, /pipe-max-size/);
  t.is(chooseMode({ memoryBytes: 32 * MiB, underlayMbit: 1000, rateSource: 'configured', capabilities: noPostCopy }).chosen, 'stop-copy');
});
