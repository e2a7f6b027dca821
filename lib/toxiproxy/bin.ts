#!/usr/bin/env node
import { parseToxiproxyArgs, type ToxiproxyCliOptions, toxiproxyUsage } from './cli';
import { toxiproxyVersion } from './toxiproxy-api';
import { startToxiproxyServer } from './toxiproxy-server';

async function main(): Promise<void> {
  let options: ToxiproxyCliOptions;
  try {
    options = parseToxiproxyArgs(process.argv.slice(2));
  } catch (error) {
    console.error(`knex-scope-toxiproxy: ${(error as Error).message}\n\n${toxiproxyUsage}`);
    process.exitCode = 2;
    return;
  }
  if (options.help) {
    console.log(toxiproxyUsage);
    return;
  }
  if (options.version) {
    console.log(toxiproxyVersion);
    return;
  }

  const server = await startToxiproxyServer({
    host: options.host,
    port: options.port,
    ...(options.config === undefined ? {} : { config: options.config }),
    ...(options.seed === undefined ? {} : { seed: options.seed }),
  });
  console.log(
    `knex-scope-toxiproxy: Toxiproxy ${toxiproxyVersion} API listening on ${server.url}` +
      (options.config === undefined ? '' : ` (proxies from ${options.config})`),
  );
  const stop = (): void => {
    server.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

main().catch((error: unknown) => {
  console.error(`knex-scope-toxiproxy: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
});
