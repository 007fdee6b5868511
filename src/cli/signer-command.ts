/**
 * `roam signer [--kubeconfig FILE] [--namespace NS] [--agents NS:SERVICEACCOUNT] [--max-days N]`:
 * signs the agents' peer certificates on Kubernetes until SIGTERM/SIGINT (kubernetes/peer-signer.ts).
 */
import { RoamError } from '../errors/roam-error.js';
import { KubeClient, PEER_SIGNER_NAME } from '../kubernetes/client.js';
import { runSigner, signerCa } from '../kubernetes/peer-signer.js';
import { parseFlags } from './flags.js';

export async function runSignerCommand(args: string[], log: (line: string) => void): Promise<number> {
  const { values, positionals } = parseFlags(args, {
    kubeconfig: { type: 'string' }, namespace: { type: 'string' }, agents: { type: 'string' }, 'max-days': { type: 'string' },
  }, 'roam signer');
  if (positionals.length > 0) throw new RoamError('INPUT_INVALID', `roam signer: unexpected argument ${JSON.stringify(positionals[0])}`);
  const agents = values.agents ?? 'roam-system:roam-agent';
  if (!/^[a-z0-9-]+:[a-z0-9-]+$/.test(agents)) throw new RoamError('INPUT_INVALID', `roam signer: --agents: ${JSON.stringify(agents)} is not NAMESPACE:SERVICEACCOUNT`);
  const maxDays = Number(values['max-days'] ?? '30');
  if (!Number.isInteger(maxDays) || maxDays < 1 || maxDays > 3650) throw new RoamError('INPUT_INVALID', `roam signer: --max-days: ${JSON.stringify(values['max-days'])} is not a whole number of days from 1 to 3650`);
  const say = (level: string) => (message: string) => log(`${new Date().toISOString()} ${level} [signer] ${message}`);
  const client = KubeClient.connect(values.kubeconfig);
  const o = {
    client, namespace: values.namespace ?? 'roam-system', secretName: 'roam-peer-ca', signerName: PEER_SIGNER_NAME,
    agentServiceAccount: agents, maxDays, say: say('info'), warn: say('warn'),
  };
  const ca = await signerCa(o);
  const nodes = client.watchNodes({ changed: () => undefined, deleted: () => undefined, error: o.warn });
  await nodes.synced;
  const stop = runSigner(o, ca, nodes);
  o.say(`signing ${PEER_SIGNER_NAME} requests of ${agents}`);
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
  });
  stop();
  nodes.stop();
  return 0;
}
