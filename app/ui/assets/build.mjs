// Builds the dashboard's assets into static/ui/: each file gets a content fingerprint in its
// name (so it can be cached as immutable) and precompressed .br and .gz siblings; manifest.json
// maps logical names to fingerprinted ones. Deterministic: the same sources give the same files.
// Usage: node app/ui/assets/build.mjs [--check]   (--check: fail if static/ui is stale)
import {build} from 'esbuild';
import {createHash} from 'node:crypto';
import {existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import {brotliCompressSync, constants, gzipSync} from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, '..', '..', '..', 'static', 'ui');
const entries = {
  'ui.css': join(here, 'ui.css'),
  'charts.css': join(here, 'charts.css'),
  'charts.js': join(here, 'charts.js'),
};

const files = {};
const manifest = {};
for (const [logical, entry] of Object.entries(entries)) {
  const result = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: logical.endsWith('.js') ? 'iife' : undefined,
    target: ['es2020', 'chrome100', 'firefox100', 'safari15'],
    minify: true,
    legalComments: 'none',
    charset: 'utf8',
    logLevel: 'warning',
  });
  const code = Buffer.from(result.outputFiles[0].contents);
  const hash = createHash('sha256').update(code).digest('hex').slice(0, 12);
  const dot = logical.lastIndexOf('.');
  const name = `${logical.slice(0, dot)}.${hash}${logical.slice(dot)}`;
  manifest[logical] = name;
  files[name] = code;
  files[`${name}.br`] = brotliCompressSync(code, {
    params: {[constants.BROTLI_PARAM_QUALITY]: 11, [constants.BROTLI_PARAM_SIZE_HINT]: code.length},
  });
  files[`${name}.gz`] = gzipSync(code, {level: 9});
}
files['manifest.json'] = Buffer.from(JSON.stringify(manifest, null, 2) + '\n');

if (process.argv.includes('--check')) {
  const stale = Object.entries(files)
    .filter(([name, data]) => !name.endsWith('.br') && !name.endsWith('.gz'))
    .filter(([name, data]) => !existsSync(join(outDir, name)) || !readFileSync(join(outDir, name)).equals(data));
  if (stale.length) {
    console.error(`static/ui is out of date (${stale.map(([n]) => n).join(', ')}): run \`make ui\``);
    process.exit(1);
  }
} else {
  mkdirSync(outDir, {recursive: true});
  for (const old of readdirSync(outDir)) {
    if (!(old in files)) unlinkSync(join(outDir, old));
  }
  for (const [name, data] of Object.entries(files)) writeFileSync(join(outDir, name), data);
}
for (const [logical, name] of Object.entries(manifest)) {
  console.log(`${logical}: ${name} ${files[name].length} B, ${files[name + '.br'].length} B brotli`);
}
