/**
 * Marks `plugin` as fastify-plugin would: Fastify skips its encapsulation (the decorators and
 * hooks it adds belong to the instance that registers it), names it, and refuses to register it
 * on a Fastify outside `fastify` (a semver range) with FST_ERR_PLUGIN_VERSION_MISMATCH. Fastify
 * reads these three `Symbol.for` keys itself (lib/plugin-utils.js); fastify-plugin sets nothing
 * else that Fastify reads, so knex-scope sets them here rather than add a runtime dependency that
 * every Express and Koa user would install too.
 *
 * @example
 * markPlugin(plugin, 'knex-scope', '5.x');
 */
export function markPlugin<Plugin extends object>(
  plugin: Plugin,
  name: string,
  fastify: string,
): Plugin {
  return Object.assign(plugin, {
    [Symbol.for('skip-override')]: true,
    [Symbol.for('fastify.display-name')]: name,
    [Symbol.for('plugin-meta')]: { name, fastify },
  });
}
