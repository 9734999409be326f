// Size budget: the client core (the package's main entry) minified and
// gzipped must stay within CORE_BUDGET_BYTES; the WebRTC helper is measured
// apart (it is a separate entry point) and reported.
import { gzipSync } from 'node:zlib';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const CORE_BUDGET_BYTES = 8 * 1024;
const here = dirname(dirname(fileURLToPath(import.meta.url)));

async function measure(entry, external = []) {
  const out = await build({
    entryPoints: [join(here, 'src', entry)],
    bundle: true,
    minify: true,
    format: 'esm',
    target: 'es2020',
    external,
    write: false,
  });
  const code = out.outputFiles[0].contents;
  return { min: code.length, gz: gzipSync(code, { level: 9 }).length };
}

const core = await measure('index.ts');
// The helper shares the emitter with the core; measured alone it carries a copy.
const rtc = await measure('webrtc.ts');
const kb = (n) => `${(n / 1024).toFixed(2)} KB`;
console.log(`core (index): ${kb(core.min)} minified, ${kb(core.gz)} min+gz (budget ${kb(CORE_BUDGET_BYTES)})`);
console.log(`webrtc helper: ${kb(rtc.min)} minified, ${kb(rtc.gz)} min+gz`);
if (core.gz > CORE_BUDGET_BYTES) {
  console.error(`the client core is over its budget by ${core.gz - CORE_BUDGET_BYTES} bytes`);
  process.exit(1);
}
