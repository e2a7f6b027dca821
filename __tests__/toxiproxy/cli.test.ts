import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseToxiproxyArgs } from '../../lib/toxiproxy';
import { startEchoServer, type TestServer } from './support';

describe('parseToxiproxyArgs', () => {
  it("defaults to Toxiproxy's localhost:8474", () => {
    expect(parseToxiproxyArgs([])).toEqual({
      host: 'localhost',
      port: 8474,
      help: false,
      version: false,
    });
  });

  it('takes one or two dashes, and values after a space or =', () => {
    expect(
      parseToxiproxyArgs(['-host', '0.0.0.0', '--port=0', '-config=proxies.json', '--seed', '42']),
    ).toEqual({
      host: '0.0.0.0',
      port: 0,
      config: 'proxies.json',
      seed: 42,
      help: false,
      version: false,
    });
  });

  it('reads boolean flags', () => {
    expect(parseToxiproxyArgs(['-version'])).toMatchObject({ version: true });
    expect(parseToxiproxyArgs(['-h'])).toMatchObject({ help: true });
    expect(parseToxiproxyArgs(['--help=false'])).toMatchObject({ help: false });
  });

  it.each([
    [['-nope'], 'flag provided but not defined: -nope'],
    [['-port'], 'flag needs an argument: -port'],
    [['-port', 'http'], 'invalid value "http" for flag -port: parse error'],
    [['-port', '70000'], 'invalid value "70000" for flag -port: parse error'],
    [['extra'], 'unexpected argument: extra'],
    [['-version=maybe'], 'invalid boolean value "maybe" for -version: parse error'],
  ])('refuses %j', (argv, message) => {
    expect(() => parseToxiproxyArgs(argv)).toThrow(message);
  });
});

// The compiled bin, when `npm run build` has produced it (npm test builds first);
// __tests__/package-exports.test.ts checks the packed one.
const bin = join(__dirname, '..', '..', 'dist', 'toxiproxy', 'bin.js');
const describeBin = existsSync(bin) ? describe : describe.skip;

function run(args: string[]): { child: ChildProcess; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exit };
}

function output(child: ChildProcess, stream: 'stdout' | 'stderr'): () => string {
  let text = '';
  child[stream]!.setEncoding('utf8');
  child[stream]!.on('data', (chunk: string) => {
    text += chunk;
  });
  return () => text;
}

describeBin('knex-scope-toxiproxy (dist/toxiproxy/bin.js)', () => {
  let echo: TestServer;
  let dir: string;

  beforeAll(async () => {
    echo = await startEchoServer();
    dir = mkdtempSync(join(tmpdir(), 'knex-scope-toxiproxy-'));
  });

  afterAll(async () => {
    await echo.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints its API address, creates the -config proxies, and exits cleanly on SIGTERM', async () => {
    const config = join(dir, 'proxies.json');
    writeFileSync(
      config,
      JSON.stringify([{ name: 'echo', listen: '127.0.0.1:0', upstream: echo.address }]),
    );
    const { child, exit } = run(['-host', '127.0.0.1', '-port', '0', '-config', config]);
    const stdout = output(child, 'stdout');
    let url: string | undefined;
    for (let i = 0; i < 200 && !url; i++) {
      url = /http:\/\/127\.0\.0\.1:\d+/.exec(stdout())?.[0];
      if (!url) await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(url).toBeDefined();
    expect(await (await fetch(`${url}/version`)).json()).toEqual({ version: '2.12.0' });
    const proxies = (await (await fetch(`${url}/proxies`)).json()) as Record<string, unknown>;
    expect(proxies.echo).toMatchObject({ upstream: echo.address, enabled: true });

    child.kill('SIGTERM');
    expect(await exit).toBe(0);
  });

  it('exits 2 with the usage on a bad flag', async () => {
    const { child, exit } = run(['-port', 'nope']);
    const stderr = output(child, 'stderr');
    expect(await exit).toBe(2);
    expect(stderr()).toContain('invalid value "nope" for flag -port');
    expect(stderr()).toContain('Usage: knex-scope-toxiproxy');
  });

  it('exits 1 when the config file cannot be read', async () => {
    const { child, exit } = run(['-port', '0', '-config', join(dir, 'missing.json')]);
    const stderr = output(child, 'stderr');
    expect(await exit).toBe(1);
    expect(stderr()).toContain('missing.json');
  });

  it('prints the Toxiproxy version it implements', async () => {
    const { child, exit } = run(['-version']);
    const stdout = output(child, 'stdout');
    expect(await exit).toBe(0);
    expect(stdout().trim()).toBe('2.12.0');
  });
});
