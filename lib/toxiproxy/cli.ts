/** The command line of `knex-scope-toxiproxy`, Toxiproxy's flags. */
export interface ToxiproxyCliOptions {
  host: string;
  port: number;
  config?: string;
  seed?: number;
  help: boolean;
  version: boolean;
}

/** The help text of `knex-scope-toxiproxy`. */
export const toxiproxyUsage = `Usage: knex-scope-toxiproxy [flags]

A Toxiproxy-compatible fault proxy (HTTP API of Toxiproxy 2.x), written in Node.

  -host string     address the API listens on (default "localhost")
  -port int        port the API listens on (default 8474)
  -config string   JSON file of proxies to create at start (the format of POST /populate)
  -seed int        seed for the random toxicity, jitter and slicer draws
  -version         print the Toxiproxy version this server implements and exit
  -help            print this help and exit

Flags take one or two dashes, and their value after a space or "=".`;

const valueFlags = new Set(['host', 'port', 'config', 'seed']);
const booleanFlags = new Set(['help', 'h', 'version']);

function integer(flag: string, value: string, min: number, max: number): number {
  const number = Number(value);
  if (!/^-?\d+$/.test(value) || number < min || number > max) {
    throw new Error(`invalid value "${value}" for flag -${flag}: parse error`);
  }
  return number;
}

/**
 * Parses Toxiproxy's flags the way Go's `flag` package does (`-port 8474`, `--port=8474`).
 * Throws an `Error` (worded like Go's) for an unknown flag, a missing value or a bad number.
 *
 * @example
 * parseToxiproxyArgs(['-host', '0.0.0.0', '-port=0']);
 * // { host: '0.0.0.0', port: 0, help: false, version: false }
 */
export function parseToxiproxyArgs(argv: readonly string[]): ToxiproxyCliOptions {
  const options: ToxiproxyCliOptions = {
    host: 'localhost',
    port: 8474,
    help: false,
    version: false,
  };
  for (let index = 0; index < argv.length; index++) {
    const arg = argv[index]!;
    if (arg === '--') {
      if (index + 1 < argv.length) throw new Error(`unexpected argument: ${argv[index + 1]}`);
      break;
    }
    const match = /^--?([^=-][^=]*)(?:=(.*))?$/s.exec(arg);
    if (!match) throw new Error(`unexpected argument: ${arg}`);
    const flag = match[1]!;
    let value = match[2];
    if (booleanFlags.has(flag)) {
      const on = value === undefined || value === 'true' || value === '1';
      if (!on && value !== 'false' && value !== '0') {
        throw new Error(`invalid boolean value "${value}" for -${flag}: parse error`);
      }
      if (flag === 'version') options.version = on;
      else options.help = on;
      continue;
    }
    if (!valueFlags.has(flag)) throw new Error(`flag provided but not defined: -${flag}`);
    if (value === undefined) {
      index += 1;
      value = argv[index];
      if (value === undefined) throw new Error(`flag needs an argument: -${flag}`);
    }
    if (flag === 'host') options.host = value;
    else if (flag === 'port') options.port = integer(flag, value, 0, 65_535);
    else if (flag === 'config') options.config = value;
    else options.seed = integer(flag, value, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  }
  return options;
}
