// @ts-check
'use strict';
// Command-line options of the bench scripts: `--name=value`, `--name value`, or an environment
// variable, in that order; `--name` alone is a flag.

/**
 * The value of `--name`, else of the environment variable `env`, else `fallback`.
 * @param {string} name
 * @param {string} env  '' for none
 * @param {string} fallback
 * @example
 *   const only = option('only', 'BENCH_ONLY', '');
 */
function option(name, env, fallback) {
  const flag = process.argv.find((arg) => arg.startsWith(`--${name}=`));
  if (flag !== undefined) return flag.slice(name.length + 3);
  const at = process.argv.indexOf(`--${name}`);
  const next = at >= 0 ? process.argv[at + 1] : undefined;
  if (next !== undefined && !next.startsWith('--')) return next;
  return (env === '' ? undefined : process.env[env]) ?? fallback;
}

/**
 * A number option; anything that is not a finite number ≥ 0 is an error, not a NaN run.
 * @param {string} name
 * @param {string} env
 * @param {number} fallback
 * @example
 *   const rounds = numberOption('rounds', 'BENCH_ROUNDS', 16);
 */
function numberOption(name, env, fallback) {
  const text = option(name, env, String(fallback));
  const value = Number(text);
  if (text === '' || !Number.isFinite(value) || value < 0) {
    throw new Error(`--${name} must be a number ≥ 0, not ${JSON.stringify(text)}`);
  }
  return value;
}

/**
 * A comma-separated list option.
 * @param {string} name
 * @param {string} env
 * @param {string} fallback
 * @example
 *   const databases = listOption('databases', 'BENCH_DATABASES', 'postgres,mariadb');
 */
function listOption(name, env, fallback) {
  return option(name, env, fallback)
    .split(',')
    .filter((item) => item !== '');
}

/**
 * Whether `--name` was given.
 * @param {string} name
 * @example
 *   const diagnose = flag('diagnose');
 */
function flag(name) {
  return process.argv.includes(`--${name}`);
}

module.exports = { flag, listOption, numberOption, option };
