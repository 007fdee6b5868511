/**
 * A container's OCI runtime configuration (config.json). The part roam
 * reads and rewrites is checked against a schema; everything else in the
 * bundle's configuration passes through untouched. What depends on the
 * node (the network namespace, the volumes' host folders, the CRIU options
 * file) is filled in by each node from the same base, the one that travels.
 */
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { Type, type Static } from '@sinclair/typebox';
import { parseWithSchema } from '../config/validate.js';
import { RoamError } from '../errors/roam-error.js';
import type { Volume } from '../records/container.js';
import { CRIU_CONFIG_ANNOTATION } from '../sys/runc.js';

const Namespace = Type.Object({ type: Type.String(), path: Type.Optional(Type.String()) }, { additionalProperties: true });
const Mount = Type.Object({ destination: Type.String(), type: Type.Optional(Type.String()), source: Type.Optional(Type.String()), options: Type.Optional(Type.Array(Type.String())) }, { additionalProperties: true });

export const OciSpec = Type.Object(
  {
    ociVersion: Type.String(),
    process: Type.Object({ args: Type.Array(Type.String(), { minItems: 1 }), terminal: Type.Optional(Type.Boolean()) }, { additionalProperties: true }),
    root: Type.Object({ path: Type.String({ minLength: 1 }), readonly: Type.Optional(Type.Boolean()) }, { additionalProperties: true }),
    hostname: Type.Optional(Type.String()),
    mounts: Type.Optional(Type.Array(Mount)),
    annotations: Type.Optional(Type.Record(Type.String(), Type.String())),
    linux: Type.Object({ namespaces: Type.Array(Namespace) }, { additionalProperties: true }),
  },
  { additionalProperties: true },
);
export type OciSpec = Static<typeof OciSpec>;

export function parseOciSpec(input: unknown, what: string): OciSpec {
  return parseWithSchema(OciSpec, input, 'INPUT_INVALID', what);
}

/** An OCI bundle's configuration, and where its root filesystem is. */
export function readBundle(bundle: string): { spec: OciSpec; rootfs: string } {
  const path = join(bundle, 'config.json');
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new RoamError('INPUT_INVALID', `bundle: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new RoamError('INPUT_INVALID', `bundle: ${path} is not JSON`);
  }
  const spec = parseOciSpec(parsed, `bundle ${path}`);
  return { spec, rootfs: isAbsolute(spec.root.path) ? spec.root.path : join(bundle, spec.root.path) };
}

/** "HOST_DIR:CONTAINER_DIR", as `roam run --volume` takes it. */
export function parseVolumeFlag(text: string): Volume {
  const at = text.indexOf(':');
  const source = at > 0 ? text.slice(0, at) : '';
  const destination = at > 0 ? text.slice(at + 1) : '';
  if (!source.startsWith('/') || !destination.startsWith('/') || destination === '/') {
    throw new RoamError('INPUT_INVALID', `volume: ${JSON.stringify(text)} must be HOST_DIR:CONTAINER_DIR, both absolute (and not the container's root)`);
  }
  return { source, destination };
}

export interface NodeSpecific {
  hostname: string;
  /** the endpoint's network namespace on this node */
  netns: string;
  /** CRIU's options file for this container on this node */
  criuConfig: string;
  /** where each volume's data is on this node */
  volumes: Volume[];
}

/**
 * The base with this node's paths: the network namespace is the endpoint's
 * (so runc joins it, and CRIU treats it as external), the root filesystem is
 * the bundle's rootfs and writable (its changes travel), stdio are plain
 * (a terminal cannot be checkpointed), and the volumes are bind mounts.
 */
export function renderSpec(base: OciSpec, node: NodeSpecific): OciSpec {
  const spec = structuredClone(base);
  spec.process.terminal = false;
  spec.root = { ...spec.root, path: 'rootfs', readonly: false };
  spec.hostname = node.hostname;
  const others = spec.linux.namespaces.filter((n) => n.type !== 'network');
  spec.linux.namespaces = [...others, { type: 'network', path: node.netns }];
  spec.annotations = { ...(spec.annotations ?? {}), [CRIU_CONFIG_ANNOTATION]: node.criuConfig };
  const volumeDestinations = new Set(node.volumes.map((v) => v.destination));
  spec.mounts = [
    ...(spec.mounts ?? []).filter((m) => !volumeDestinations.has(m.destination)),
    ...node.volumes.map((v) => ({ destination: v.destination, type: 'bind', source: v.source, options: ['rbind', 'rw'] })),
  ];
  return spec;
}
