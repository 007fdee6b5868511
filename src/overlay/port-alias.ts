/**
 * An endpoint's bridge port carries its owner in the link alias
 * ("roam:NAME"), so kernel state says by itself which port is whose: no
 * naming scheme has to be shared between modules, and an agent restart finds
 * its ports again by reading links.
 */
const PREFIX = 'roam:';

export function portAlias(endpoint: string): string {
  return `${PREFIX}${endpoint}`;
}

export function endpointOfAlias(alias: string | undefined): string | undefined {
  return alias?.startsWith(PREFIX) ? alias.slice(PREFIX.length) : undefined;
}
