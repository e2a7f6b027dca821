#!/usr/bin/env node
// The registry mirror on our CI machines serves only the linux builds of platform-specific
// packages, so `npm install` there writes a lock without the other platforms' optional
// dependencies, and npm 11's `npm ci` then refuses the lock as "out of sync". This script adds
// the missing entries with the os/cpu/libc fields npm uses to skip them, exactly as a lock
// written against the public registry has them (minus integrity, which npm then skips).
// Run it after every `npm install` that changes package-lock.json.
const fs = require('node:fs');
const path = require('node:path');

const lockPath = path.join(__dirname, '..', 'package-lock.json');
const lock = JSON.parse(fs.readFileSync(lockPath, 'utf8'));
const packages = lock.packages;

const OSES = ['android', 'darwin', 'linux', 'win32', 'freebsd', 'openharmony', 'sunos', 'aix'];
const CPUS = ['arm64', 'x64', 'ia32', 'ppc64', 's390x', 'loong64', 'riscv64', 'wasm32', 'arm'];

/**
 * @param {string} name
 * @returns {{ os?: string[], cpu: string[], libc?: string[] } | undefined}
 */
function platformOf(name) {
  const tokens = (name.split('/').pop() ?? name).split('-');
  const os = OSES.find((o) => tokens.includes(o));
  const cpu = CPUS.find((c) => tokens.includes(c));
  if (cpu === 'wasm32') return { cpu: ['wasm32'] };
  if (!os || !cpu) return undefined;
  /** @type {{ os: string[], cpu: string[], libc?: string[] }} */
  const platform = { os: [os], cpu: [cpu] };
  if (os === 'linux') platform.libc = [name.includes('musl') ? 'musl' : 'glibc'];
  return platform;
}

/**
 * @param {string} fromKey
 * @param {string} dep
 */
function resolves(fromKey, dep) {
  for (let dir = fromKey; ; ) {
    if (packages[`${dir ? `${dir}/` : ''}node_modules/${dep}`]) return true;
    if (!dir) return false;
    const cut = dir.lastIndexOf('/node_modules/');
    dir = cut === -1 ? '' : dir.slice(0, cut);
  }
}

let added = 0;
for (const [key, entry] of Object.entries({ ...packages })) {
  for (const [dep, version] of Object.entries(entry.optionalDependencies ?? {})) {
    if (resolves(key, dep)) continue;
    const platform = platformOf(dep);
    if (!platform) {
      console.error(`cannot infer the platform of ${dep} (needed by ${key || 'the root'})`);
      process.exitCode = 1;
      continue;
    }
    packages[`node_modules/${dep}`] = {
      version,
      ...(entry.dev ? { dev: true } : {}),
      optional: true,
      ...platform,
    };
    added += 1;
  }
}

lock.packages = Object.fromEntries(
  Object.entries(packages).sort(([a], [b]) => a.localeCompare(b, 'en')),
);
fs.writeFileSync(lockPath, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`added ${added} platform entries to package-lock.json`);
