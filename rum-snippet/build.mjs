// Builds static/fieldlab.js: one minified ES2017 IIFE. Deterministic — the same sources give
// byte-identical output (no banner with dates, no source map, no absolute paths).
// Usage: node rum-snippet/build.mjs [--check]   (--check: fail if static/fieldlab.js is stale)
import {build} from 'esbuild';
import {readFileSync, writeFileSync, mkdirSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'static', 'fieldlab.js');

const result = await build({
  entryPoints: [join(here, 'src', 'index.js')],
  bundle: true,
  write: false,
  format: 'iife',
  target: 'es2017',
  minify: true,
  legalComments: 'none',
  // Private property names start with "_" and are shortened; beacon keys are left alone.
  mangleProps: /^_/,
  charset: 'utf8',
  logLevel: 'warning',
});
const code = result.outputFiles[0].text;

if (process.argv.includes('--check')) {
  let current = '';
  try {
    current = readFileSync(out, 'utf8');
  } catch {}
  if (current !== code) {
    console.error('static/fieldlab.js is out of date: run `node rum-snippet/build.mjs`');
    process.exit(1);
  }
} else {
  mkdirSync(dirname(out), {recursive: true});
  writeFileSync(out, code);
}
console.log(`fieldlab.js: ${Buffer.byteLength(code)} bytes`);
