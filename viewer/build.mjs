// Builds the viewer page into dist/: the page, its script bundled with esbuild (the IVS player's npm
// build is CommonJS and needs the `events` package), and the player's wasm worker files, which the
// page loads by URL. Run from the lock file: npm ci && npm run build.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, 'dist');
rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
await build({
  entryPoints: [join(here, 'viewer.js')],
  bundle: true,
  minify: true,
  sourcemap: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2020'],
  outfile: join(dist, 'viewer.js'),
  logLevel: 'warning',
});
copyFileSync(join(here, 'index.html'), join(dist, 'index.html'));
const assets = join(here, 'node_modules', 'amazon-ivs-player', 'dist', 'assets');
for (const file of ['amazon-ivs-wasmworker.min.js', 'amazon-ivs-wasmworker.min.wasm']) {
  copyFileSync(join(assets, file), join(dist, file));
}
console.log(`viewer page built in ${dist}`);
