/**
 * The dependency rule of docs/ARCHITECTURE.md (its ```layers and ```pure
 * blocks), held against every import under src/.
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkLayering, importsOf, parseRule, readImportGraph, readUnits, repoRoot, resolveSpecifier, type ImportGraph } from '../helpers/layering.js';

const root = repoRoot(fileURLToPath(import.meta.url));
const rule = parseRule(readFileSync(join(root, 'docs/ARCHITECTURE.md'), 'utf8'));

test('every import under src/ keeps to the layers of docs/ARCHITECTURE.md, without cycles between folders or files', (t) => {
  const graph = readImportGraph(root);
  t.true(Object.keys(graph).length > 50, 'the sources were found');
  const problems = checkLayering(graph, rule, readUnits(root));
  t.deepEqual(problems, [], `\n${problems.map((p) => `  - ${p}`).join('\n')}\n`);
});

test('the rule places the parts as intended', (t) => {
  const layerOf = (u: string) => rule.layers.findIndex((l) => l.includes(u));
  const above = (a: string, b: string) => t.true(layerOf(a) >= 0 && layerOf(a) < layerOf(b), `${a} is above ${b}`);
  above('api', 'peer');
  above('peer', 'migration');
  above('policy', 'migration');
  above('migration', 'checkpoint');
  for (const low of ['records', 'errors', 'net', 'config', 'events']) above('cluster', low);
  above('config', 'records');
  above('events', 'records');
  t.true(rule.pure.includes('policy/engine.ts'), 'the policy engine is declared pure');
});

// The checker must be able to fail: a made-up graph that breaks every rule, and what it must say.
const badRule = parseRule([
  'Some prose.',
  '```layers',
  'top           # a reason, dropped',
  'left, right',
  'bottom',
  '```',
  '```pure',
  'bottom/calc.ts',
  '```',
].join('\n'));

const badGraph: ImportGraph = {
  'src/top/a.ts': [{ specifier: '../left/b.js', to: 'src/left/b.ts', typeOnly: false }],
  // left may not import right (same layer)...
  'src/left/b.ts': [{ specifier: '../right/c.js', to: 'src/right/c.ts', typeOnly: false }],
  // ...and bottom may not import top (a layer above), which also closes a cycle of folders and of files.
  'src/right/c.ts': [{ specifier: '../bottom/d.js', to: 'src/bottom/d.ts', typeOnly: true }],
  'src/bottom/d.ts': [{ specifier: '../top/a.js', to: 'src/top/a.ts', typeOnly: false }],
  // two files of one folder importing each other
  'src/bottom/e.ts': [{ specifier: './f.js', to: 'src/bottom/f.ts', typeOnly: false }],
  'src/bottom/f.ts': [{ specifier: './e.js', to: 'src/bottom/e.ts', typeOnly: false }],
  // a pure module that reaches sys/ through another file, and a missing file
  'src/bottom/calc.ts': [{ specifier: './g.js', to: 'src/bottom/g.ts', typeOnly: false }, { specifier: './gone.js', to: undefined, typeOnly: false }],
  'src/bottom/g.ts': [{ specifier: '../sys/h.js', to: 'src/sys/h.ts', typeOnly: false }, { specifier: 'node:fs', to: undefined, typeOnly: false }],
  'src/sys/h.ts': [],
};

test('the checker reports every kind of break in a made-up graph', (t) => {
  t.deepEqual(badRule.layers, [['top'], ['left', 'right'], ['bottom']]);
  t.deepEqual(badRule.pure, ['bottom/calc.ts']);
  const problems = checkLayering(badGraph, badRule, ['top', 'left', 'right', 'bottom', 'sys', 'stray']);
  const has = (what: string, re: RegExp) => t.true(problems.some((p) => re.test(p)), `${what}\n${problems.join('\n')}`);
  has('an unlisted folder', /^src\/stray is in no layer/);
  has('an unlisted folder imported', /^src\/sys is in no layer/);
  has('an import upwards, naming both files', /^src\/bottom\/d\.ts imports src\/top\/a\.ts: bottom \(layer 3: bottom\) may not import top \(layer 1: top\), a layer above it$/);
  has('an import within a layer', /^src\/left\/b\.ts imports src\/right\/c\.ts: left and right share layer 2/);
  has('a cycle of folders, with a witness per hop', /^folders import each other in a cycle: bottom → top → left → right → bottom \(src\/bottom\/d\.ts → src\/top\/a\.ts; .*src\/right\/c\.ts → src\/bottom\/d\.ts\)$/);
  has('a cycle of files across folders', /^files import each other in a cycle: src\/bottom\/d\.ts → src\/top\/a\.ts → src\/left\/b\.ts → src\/right\/c\.ts → src\/bottom\/d\.ts$/);
  has('a cycle of files in one folder', /^files import each other in a cycle: src\/bottom\/e\.ts → src\/bottom\/f\.ts → src\/bottom\/e\.ts$/);
  has('a pure module reaching sys/', /^src\/bottom\/calc\.ts is pure, but reaches sys\/: src\/bottom\/calc\.ts → src\/bottom\/g\.ts → src\/sys\/h\.ts$/);
  has("a pure module reaching Node's I/O", /^src\/bottom\/calc\.ts is pure, but reaches Node's node:fs/);
  has('a relative import of no file', /^src\/bottom\/calc\.ts imports \.\/gone\.js, which is no file$/);
  t.is(problems.length, 10, problems.join('\n'));

  const good: ImportGraph = { 'src/top/a.ts': [{ specifier: '../bottom/d.js', to: 'src/bottom/d.ts', typeOnly: false }], 'src/bottom/d.ts': [] };
  t.deepEqual(checkLayering(good, badRule, ['top', 'bottom']), [], 'a graph that keeps the rule passes');
});

test('imports are found in every form, and not in comments or strings', (t) => {
  const source = [
    "import a from './a.js';",
    "import type { B } from '../b.js';",
    "import { type C, type D } from './cd.js';",
    "import { e, type E } from './e.js';",
    "import './side.js';",
    "export { f } from './f.js';",
    "export type { G } from './g.js';",
    "export * from './h.js';",
    "type I = import('../i.js').I;",
    "let j: { x: import('./j.js').J } | undefined;",
    "const k = await import('./k.js');",
    "// import { no } from './comment.js';",
    "/* export * from './block.js'; */",
    "const s = \"import x from './string.js'\";",
    "import { readFileSync } from 'node:fs';",
  ].join('\n');
  t.deepEqual(importsOf('x.ts', source), [
    { specifier: './a.js', typeOnly: false },
    { specifier: '../b.js', typeOnly: true },
    { specifier: './cd.js', typeOnly: true },
    { specifier: './e.js', typeOnly: false },
    { specifier: './side.js', typeOnly: false },
    { specifier: './f.js', typeOnly: false },
    { specifier: './g.js', typeOnly: true },
    { specifier: './h.js', typeOnly: false },
    { specifier: '../i.js', typeOnly: true },
    { specifier: './j.js', typeOnly: true },
    { specifier: './k.js', typeOnly: false },
    { specifier: 'node:fs', typeOnly: false },
  ]);
  const files = new Set(['src/x/y.ts', 'src/x/z/index.ts']);
  t.is(resolveSpecifier('src/a/b.ts', '../x/y.js', (f) => files.has(f)), 'src/x/y.ts');
  t.is(resolveSpecifier('src/x/y.ts', './z', (f) => files.has(f)), 'src/x/z/index.ts');
  t.is(resolveSpecifier('src/x/y.ts', './none.js', (f) => files.has(f)), undefined);
});
