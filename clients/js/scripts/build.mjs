// Builds the package: `dist/` (ESM + type declarations, by tsc, one file per
// module so that apps tree-shake what they do not use) and the demo page's
// script that the server embeds (`server/static/demo.js`, one ESM bundle of
// the demo app, the client and the WebRTC helper, by esbuild).
//
// The demo bundle is committed so that `cargo build` needs no Node; `--check`
// rebuilds it in memory and fails when the committed file differs (drift).
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const here = dirname(dirname(fileURLToPath(import.meta.url)));
const demoOut = join(here, '..', '..', 'server', 'static', 'demo.js');
const check = process.argv.includes('--check');

const BANNER =
  '// Generated from clients/js/demo/app.ts by clients/js/scripts/build.mjs (npm run build).\n' +
  '// Do not edit: the check script fails when this file and its sources disagree.';

async function demoBundle() {
  const out = await build({
    entryPoints: [join(here, 'demo', 'app.ts')],
    bundle: true,
    format: 'esm',
    target: 'es2020',
    minify: false,
    legalComments: 'none',
    banner: { js: BANNER },
    write: false,
  });
  return out.outputFiles[0].text;
}

if (check) {
  const want = await demoBundle();
  let have = '';
  try {
    have = readFileSync(demoOut, 'utf8');
  } catch {
    // missing: reported below
  }
  if (have !== want) {
    console.error('server/static/demo.js is out of date with clients/js: run `npm run build` in clients/js and commit it');
    process.exit(1);
  }
  console.log('server/static/demo.js matches its sources');
} else {
  rmSync(join(here, 'dist'), { recursive: true, force: true });
  execFileSync(process.execPath, [join(here, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(here, 'tsconfig.json')], {
    stdio: 'inherit',
  });
  writeFileSync(demoOut, await demoBundle());
  console.log('built dist/ and server/static/demo.js');
}
