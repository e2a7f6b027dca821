export type { ToxiproxyCliOptions } from './cli';
export { parseToxiproxyArgs } from './cli';
export type { ProxyJson } from './tcp-proxy';
export type { Toxic, ToxicStream, ToxicType } from './toxic';
export { toxicAttributes } from './toxic';
export { toxiproxyVersion } from './toxiproxy-api';
export { ToxiproxyApiError } from './toxiproxy-api-error';
export type { ToxiproxyServer, ToxiproxyServerOptions } from './toxiproxy-server';
export { startToxiproxyServer } from './toxiproxy-server';
