/**
 * The layering rule of docs/ARCHITECTURE.md, checked: the rule's parser, the
 * import graph of src/ (read with TypeScript's own parser, so comments and
 * strings never count), and a checker that is a pure function of the two.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, posix, relative, sep } from 'node:path';
import ts from 'typescript';

/** The rule: layers from top to bottom (each a list of units: folders of src/, or its root files), and the pure modules. */
export interface Rule {
  layers: string[][];
  /** units, or files (src-relative, like policy/engine.ts), that must reach neither sys/ nor Node's I/O modules */
  pure: string[];
}

/** One import of one file. */
export interface Edge {
  /** as written */
  specifier: string;
  /** the imported file, repo-relative ('src/x/y.ts'); undefined for a package, or for a relative import that resolves to nothing */
  to: string | undefined;
  /** erased at compile time: `import type`, `import { type A }` only, `export type … from`, `import('…').T` in a type */
  typeOnly: boolean;
}

/** Every file's imports, by repo-relative path ('src/api/app.ts'). */
export type ImportGraph = Record<string, Edge[]>;

/** Node's modules that do I/O (node:net is not among them: net/ip.ts takes its pure isIP): a pure module reaches none of them. */
export const IO_MODULES = ['fs', 'fs/promises', 'child_process', 'dgram', 'http', 'https', 'http2', 'tls', 'worker_threads'];

function entries(text: string): string[] {
  return text.split(/[\s,]+/).map((s) => s.trim()).filter((s) => s.length > 0);
}

/**
 * The fenced blocks ```layers and ```pure of a markdown text. One layer per
 * line, top first; units separated by commas or spaces; a `#` starts a
 * reason, which is dropped.
 */
export function parseRule(markdown: string): Rule {
  const block = (lang: string): string[] | undefined => {
    const m = new RegExp('^```' + lang + '[ \\t]*\\n([\\s\\S]*?)^```', 'm').exec(markdown);
    return m ? m[1]!.split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter((l) => l.length > 0) : undefined;
  };
  const layers = block('layers');
  if (!layers) throw new Error('no ```layers block');
  return { layers: layers.map(entries), pure: (block('pure') ?? []).flatMap(entries) };
}

/** What a file imports, from its source: static, type-only, re-exports, side-effect imports, dynamic `import('…')` (as a call or in a type). */
export function importsOf(fileName: string, source: string): { specifier: string; typeOnly: boolean }[] {
  const sf = ts.createSourceFile(fileName, source, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: { specifier: string; typeOnly: boolean }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) && ts.isStringLiteral(node.moduleSpecifier)) {
      const clause = node.importClause;
      const named = clause?.namedBindings && ts.isNamedImports(clause.namedBindings) ? clause.namedBindings.elements : undefined;
      const typeOnly = clause !== undefined && (clause.isTypeOnly
        || (clause.name === undefined && named !== undefined && named.length > 0 && named.every((e) => e.isTypeOnly)));
      found.push({ specifier: node.moduleSpecifier.text, typeOnly });
    } else if (ts.isExportDeclaration(node) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      const named = node.exportClause && ts.isNamedExports(node.exportClause) ? node.exportClause.elements : undefined;
      const typeOnly = node.isTypeOnly || (named !== undefined && named.length > 0 && named.every((e) => e.isTypeOnly));
      found.push({ specifier: node.moduleSpecifier.text, typeOnly });
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) && ts.isStringLiteral(node.moduleReference.expression)) {
      found.push({ specifier: node.moduleReference.expression.text, typeOnly: node.isTypeOnly });
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push({ specifier: node.argument.literal.text, typeOnly: true });
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteralLike(node.arguments[0])) {
      found.push({ specifier: node.arguments[0].text, typeOnly: false });
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

/** A relative specifier as the file it names (repo-relative), given the files that exist; undefined if none does. */
export function resolveSpecifier(from: string, specifier: string, exists: (file: string) => boolean): string | undefined {
  const base = posix.normalize(posix.join(posix.dirname(from), specifier));
  const candidates = base.endsWith('.js') ? [base.slice(0, -3) + '.ts', base] : [base, `${base}.ts`, `${base}/index.ts`];
  return candidates.find(exists);
}

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? walk(path) : [path];
  });
}

/** The repository's import graph: every .ts file under src/ and what it imports. */
export function readImportGraph(root: string): ImportGraph {
  const toRepo = (p: string) => relative(root, p).split(sep).join('/');
  const files = walk(join(root, 'src')).filter((p) => p.endsWith('.ts')).map(toRepo);
  const graph: ImportGraph = {};
  for (const file of files) {
    graph[file] = importsOf(file, readFileSync(join(root, file), 'utf8')).map(({ specifier, typeOnly }) => ({
      specifier,
      typeOnly,
      to: specifier.startsWith('.') ? resolveSpecifier(file, specifier, (f) => existsSync(join(root, f)) && statSync(join(root, f)).isFile()) : undefined,
    }));
  }
  return graph;
}

/** The units present under src/: its folders, and its root .ts files. */
export function readUnits(root: string): string[] {
  return readdirSync(join(root, 'src'), { withFileTypes: true })
    .filter((e) => e.isDirectory() || e.name.endsWith('.ts'))
    .map((e) => e.name);
}

/** The unit a repo path belongs to: 'src/sys/netlink/links.ts' is in sys, 'src/agent.ts' is agent.ts; undefined outside src/. */
export function unitOf(file: string): string | undefined {
  const parts = file.split('/');
  if (parts[0] !== 'src' || parts.length < 2) return undefined;
  return parts[1];
}

/**
 * The strongly connected components of more than one node (or with a
 * self-loop): each with its members, sorted, and its shortest cycle through
 * the first of them.
 */
function cycles(nodes: string[], next: (n: string) => string[]): { members: string[]; cycle: string[] }[] {
  // Tarjan's algorithm, then one concrete cycle per component (a path back to its first node).
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const strong = (v: string): void => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of next(v)) {
      if (!idx.has(w)) {
        strong(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, idx.get(w)!));
      }
    }
    if (low.get(v) === idx.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || next(v).includes(v)) components.push(comp);
    }
  };
  for (const n of [...nodes].sort()) if (!idx.has(n)) strong(n);
  return components.map((comp) => {
    const inComp = new Set(comp);
    const start = [...comp].sort()[0]!;
    // Breadth-first from start's successors back to start, within the component: the shortest cycle through start.
    const prev = new Map<string, string>();
    const queue = next(start).filter((n) => inComp.has(n));
    for (const n of queue) prev.set(n, start);
    for (let i = 0; i < queue.length; i++) {
      const v = queue[i]!;
      if (v === start) break;
      for (const w of next(v)) if (inComp.has(w) && !prev.has(w)) { prev.set(w, v); queue.push(w); }
    }
    const path = [start];
    for (let v = prev.get(start)!; v !== start; v = prev.get(v)!) path.unshift(v);
    path.unshift(start);
    return { members: [...comp].sort(), cycle: path };
  });
}

/**
 * Everything in `graph` that breaks `rule`, one sentence each (none: it
 * holds). `units` are the folders and root files that exist under src/.
 */
export function checkLayering(graph: ImportGraph, rule: Rule, units: string[]): string[] {
  const problems: string[] = [];
  const layerOf = new Map<string, number>();
  rule.layers.forEach((layer, i) => layer.forEach((u) => {
    if (layerOf.has(u)) problems.push(`the rule lists ${u} twice`);
    layerOf.set(u, i);
  }));
  const describe = (u: string) => `${u} (layer ${layerOf.get(u)! + 1}: ${rule.layers[layerOf.get(u)!]!.join(', ')})`;

  for (const u of [...units].sort()) {
    if (!layerOf.has(u)) problems.push(`src/${u} is in no layer of the rule: add it to the \`\`\`layers block of docs/ARCHITECTURE.md`);
  }

  const files = Object.keys(graph).sort();
  for (const from of files) {
    const a = unitOf(from);
    for (const e of graph[from]!) {
      if (e.specifier.startsWith('.') && e.to === undefined) {
        problems.push(`${from} imports ${e.specifier}, which is no file`);
        continue;
      }
      if (!e.to) continue;
      const b = unitOf(e.to);
      if (!a || !b || a === b || !layerOf.has(a) || !layerOf.has(b)) continue;
      const la = layerOf.get(a)!;
      const lb = layerOf.get(b)!;
      if (lb < la) problems.push(`${from} imports ${e.to}: ${describe(a)} may not import ${describe(b)}, a layer above it`);
      else if (lb === la) problems.push(`${from} imports ${e.to}: ${a} and ${b} share layer ${la + 1}, and a layer's units may not import each other`);
    }
  }

  // Cycles between units (folders and root files).
  const unitEdges = new Map<string, Map<string, string>>();
  for (const from of files) {
    const a = unitOf(from);
    for (const e of graph[from]!) {
      const b = e.to ? unitOf(e.to) : undefined;
      if (!a || !b || a === b) continue;
      const m = unitEdges.get(a) ?? new Map<string, string>();
      if (!m.has(b)) m.set(b, `${from} → ${e.to}`);
      unitEdges.set(a, m);
    }
  }
  const unitNodes = [...new Set([...unitEdges.keys(), ...[...unitEdges.values()].flatMap((m) => [...m.keys()])])];
  for (const { members, cycle } of cycles(unitNodes, (u) => [...(unitEdges.get(u)?.keys() ?? [])].sort())) {
    const witnesses = cycle.slice(1).map((u, i) => unitEdges.get(cycle[i]!)!.get(u)!);
    const more = members.length > cycle.length - 1 ? `; ${members.join(', ')} are all in cycles with each other` : '';
    problems.push(`folders import each other in a cycle: ${cycle.join(' → ')} (${witnesses.join('; ')})${more}`);
  }

  // Cycles between files.
  const fileNext = (f: string) => [...new Set((graph[f] ?? []).map((e) => e.to).filter((t): t is string => t !== undefined && t in graph))].sort();
  for (const { members, cycle } of cycles(files, fileNext)) {
    const more = members.length > cycle.length - 1 ? `; ${members.join(', ')} are all in cycles with each other` : '';
    problems.push(`files import each other in a cycle: ${cycle.join(' → ')}${more}`);
  }

  // Pure modules: what they import at run time, all the way down, stays out of sys/ and Node's I/O.
  const isPure = (file: string) => rule.pure.some((p) => p.endsWith('.ts') ? file === `src/${p}` : unitOf(file) === p);
  for (const start of files.filter(isPure)) {
    const seen = new Map<string, string[]>([[start, [start]]]);
    const queue = [start];
    for (let i = 0; i < queue.length; i++) {
      const f = queue[i]!;
      for (const e of graph[f] ?? []) {
        if (e.typeOnly) continue;
        const path = seen.get(f)!;
        const name = e.specifier.replace(/^node:/, '');
        if (!e.specifier.startsWith('.') && IO_MODULES.includes(name)) {
          problems.push(`${start} is pure, but reaches Node's ${e.specifier}: ${[...path, e.specifier].join(' → ')}`);
        } else if (e.to && unitOf(e.to) === 'sys') {
          problems.push(`${start} is pure, but reaches sys/: ${[...path, e.to].join(' → ')}`);
        } else if (e.to && !seen.has(e.to)) {
          seen.set(e.to, [...path, e.to]);
          queue.push(e.to);
        }
      }
    }
  }
  return problems;
}

/** The repository's root, from a compiled file's own URL (dist/test/…/x.js or test/…/x.ts). */
export function repoRoot(fromFile: string): string {
  let dir = dirname(fromFile);
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'src'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`no repository above ${fromFile}`);
    dir = up;
  }
  return dir;
}
