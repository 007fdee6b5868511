/** `roam agent --config FILE [--node NAME] [--underlay-address IP]`: runs one node agent until SIGTERM/SIGINT. */
import { Agent } from '../agent.js';
import { loadConfigFile } from '../config/load.js';
import { RoamError } from '../errors/roam-error.js';
import { parseFlags } from './flags.js';

export async function runAgent(args: string[], log: (line: string) => void): Promise<number> {
  const { values, positionals } = parseFlags(args, { config: { type: 'string' }, node: { type: 'string' }, 'underlay-address': { type: 'string' } }, 'roam agent');
  if (positionals.length > 0) throw new RoamError('INPUT_INVALID', `roam agent: unexpected argument ${JSON.stringify(positionals[0])}`);
  if (!values.config) throw new RoamError('INPUT_INVALID', 'roam agent: --config FILE is required');
  const config = loadConfigFile(values.config, { node: values.node, underlayAddress: values['underlay-address'] });
  const agent = new Agent(config);
  agent.events.on('log', (e) => log(`${new Date().toISOString()} ${e.level} [${config.node}] ${e.message}`));
  agent.events.on('overlay.error', (e) => log(`${new Date().toISOString()} warn [${config.node}] overlay: ${e.message}`));
  await agent.start();
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  log(`${new Date().toISOString()} info [${config.node}] stopping (endpoints and overlay stay)`);
  await agent.stop();
  return 0;
}
