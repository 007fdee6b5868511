/** Flag parsing shared by every `roam` subcommand. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { RoamError } from '../errors/roam-error.js';

/** parseArgs with errors that name the flag, as RoamErrors. */
export function parseFlags<O extends NonNullable<ParseArgsConfig['options']>>(args: string[], options: O, what: string) {
  try {
    return parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new RoamError('INPUT_INVALID', `${what}: ${(e as Error).message.replace(/\. To specify a positional argument.*$/s, '')}`);
  }
}
