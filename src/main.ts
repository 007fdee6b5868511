#!/usr/bin/env node
// Process entry: the only module with side effects at import.
import { runCli } from './cli/roam.js';

process.exitCode = await runCli(process.argv.slice(2));
