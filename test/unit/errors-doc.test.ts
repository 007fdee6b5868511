import test from 'ava';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ErrorCodes } from '../../src/errors/codes.js';

test('docs/ERRORS.md documents every error code, with its status and description', (t) => {
  const doc = readFileSync(fileURLToPath(new URL('../../../docs/ERRORS.md', import.meta.url)), 'utf8');
  for (const [code, { status, description }] of Object.entries(ErrorCodes)) {
    t.true(doc.includes(`| ${code} | ${status} | ${description} |`), `${code} is documented as in the registry`);
  }
  const documented = [...doc.matchAll(/^\| ([A-Z_]+) \| \d{3} \|/gm)].map((m) => m[1]);
  t.deepEqual(documented.sort(), Object.keys(ErrorCodes).sort(), 'no stale codes in the doc');
});
