import test from 'ava';
import { runCli } from '../../src/cli/roam.js';

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runCli(args, (l) => out.push(l), (l) => err.push(l));
  return { code, out: out.join('\n'), err: err.join('\n') };
}

test('bad command lines exit 2 with a message naming what was wrong', async (t) => {
  const api = ['--api', '/nonexistent/roam.sock'];
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown command "frobnicate"/],
    [['run', ...api, '--name', 'x', '--', 'true'], /--node is required/],
    [['run', ...api, '--node', 'node1', '--', 'true'], /--name is required/],
    [['run', ...api, '--node', 'node1', '--name', 'x'], /give the program to run after --/],
    [['run', ...api, '--node', 'node1', '--name', 'x', '--colour', 'red', '--', 'true'], /roam run: Unknown option '--colour'/],
    [['run', ...api, '--node', 'node1', '--name', 'x', 'true'], /unexpected argument "true"; put the command after --/],
    [['ps', ...api, 'extra'], /unexpected argument "extra"/],
    [['logs', ...api], /give exactly one endpoint name/],
    [['stop', ...api, 'a', 'b'], /give exactly one endpoint name/],
    [['testbed', 'sideways'], /expected up, down or status/],
    [['testbed', 'up', '--nodes', 'three'], /--nodes: expected a whole number, got "three"/],
    [['testbed', 'up', '--nodes', '0', '--name', 'zz'], /--nodes: must be a whole number from 1/],
    [['testbed', 'up', '--name', 'Bad_Name'], /--name: "Bad_Name" must be 1-8 lowercase/],
    [['testbed', 'up', '--name', 'zz', '--underlay-rate', 'fast'], /--underlay-rate: "fast" is not a rate/],
    [['ps', '--api', 'http://172.31.0.1:7947'], /off loopback the control API is served over https only/],
    [['ps', '--api', 'https://172.31.0.1:7947'], /needs its token: --api-token-file FILE or \$ROAM_API_TOKEN_FILE/],
    [['ps', '--api', 'https://172.31.0.1'], /give the scheme, host and port only/],
    [['ps', '--api', 'https://172.31.0.1:7947', '--api-token-file', '/nonexistent/token'], /--api-token-file: cannot read \/nonexistent\/token \(ENOENT\)/],
    [['ps', '--api', '/some/agent.sock', '--api-ca', '/ca.pem'], /--api-ca and --api-token-file go with --api https:\/\/HOST:PORT/],
    [['agent'], /--config FILE is required/],
    [['agent', '--config', '/nonexistent/agent.json'], /cannot read \(ENOENT\)/],
  ];
  for (const [args, message] of cases) {
    const r = await cli(args);
    t.is(r.code, 2, `exit code for ${args.join(' ')}`);
    t.regex(r.err, message, args.join(' '));
  }
});

test('an agent that is not there is named, not a stack trace', async (t) => {
  const r = await cli(['ps', '--api', '/nonexistent/roam.sock']);
  t.is(r.code, 1);
  t.regex(r.err, /roam: error: \/nonexistent\/roam\.sock: not reachable \(ENOENT\)/);
});

test('help prints the usage', async (t) => {
  const r = await cli(['--help']);
  t.is(r.code, 0);
  t.regex(r.out, /run --node NODE --name NAME \[--ip IP\] -- CMD/);
});
