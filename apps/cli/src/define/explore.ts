/** The `ccmem explore` command line; the work is in commands/explore.ts. */
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Command, Option } from 'commander';
import type { CliIo } from '../io.js';
import type { ExploreCommandOptions } from '../commands/explore.js';
import { addReportOptions, count, parseDuration, parseShard, positive } from './options.js';

/** the built-in explorations' names, read from @ccmem/scenario's explorations/ without loading it */
function builtinNames(): string[] {
  try {
    const pkg = createRequire(import.meta.url).resolve('@ccmem/scenario/package.json');
    return readdirSync(join(dirname(pkg), 'explorations'))
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => f.slice(0, -'.yaml'.length))
      .sort();
  } catch {
    return [];
  }
}

export function buildExploreCommand(io: CliIo, done: (code: number) => void): Command {
  const names = builtinNames();
  const cmd = new Command('explore')
    .description('explore the interleavings of a scenario with concurrent actors (docs/explore.md)')
    .addHelpText(
      'after',
      [
        '',
        'Give an exploration file or --builtin <name>. The file\'s `explore: expect:` (or --expect)',
        'says what the search must find: pass (the default: a complete search finds no violation),',
        'violation, or livelock. Progress goes to stderr (--no-progress), the summary to stdout.',
        '',
        'Exit codes: 0 the expected result; 1 another result; 2 invalid file or usage;',
        '3 incomplete (stopped by --time or --max-schedules before anything was found).',
      ].join('\n'),
    )
    .usage('<file> | --builtin <name> [options]')
    .argument('[file]', 'exploration file: a scenario file with a concurrent: block')
    .option('--builtin <name>', names.length ? `a built-in exploration: ${names.join(', ')}` : 'a built-in exploration')
    .addOption(new Option('--expect <result>', "what the search must find (default: the file's explore: expect, else pass)").choices(['pass', 'violation', 'livelock']))
    .addOption(new Option('--mode <mode>', "search strategy (default: the file's, else exhaustive)").choices(['exhaustive', 'random', 'pct']))
    .option('--bound <N>', 'scheduled phases per run (exhaustive: depth bound; default 64)', count)
    .option('--seed <S>', 'PRNG seed (random, pct)', count)
    .option('--schedules <N>', 'runs (random, pct) or a cap on runs (exhaustive)', count)
    .option('--depth <D>', 'pct bug depth (D - 1 priority change points)', count)
    .addOption(new Option('--reduction <r>', 'exhaustive: dpor (default: backtrack sets below the shard depth + sleep sets) or sleep (sleep sets alone)').choices(['sleep', 'dpor']))
    .option('--time <duration>', 'stop after this long (90, 30s, 5m, 1h30m); the summary then says "incomplete"', parseDuration)
    .option('--max-schedules <N>', 'stop after N runs; the summary then says "incomplete"', positive)
    .option('--shard <K/N>', 'exhaustive: explore only shard K of N (merge the --json results with ccmem merge)', parseShard)
    .option('--shard-depth <D>', 'prefix length whose subtrees are dealt out to the shards (default 4)', positive)
    .option('--workers <N>', 'exhaustive: run N shards in worker threads and merge them', positive)
    .option('--no-progress', 'no progress lines on stderr')
    .option('--replay <schedule>', 'rerun one schedule ("vmm.cpu0.cpu0…") and print its events')
    .option('--skip-retry-check', 'fault injection: skip mmu_invalidate_retry_gfn under mmu_lock')
    .option('--json', 'print one JSON document')
    .option('--report <file>', 'write a self-contained HTML report: the counterexample (or the --replay schedule) phase by phase, one swimlane per actor, with the state after each phase');
  return addReportOptions(cmd).action(async (file: string | undefined, opts: ExploreCommandOptions) => {
    const { exploreCommand } = await import('../commands/explore.js');
    done(await exploreCommand(io, file, opts));
  });
}
