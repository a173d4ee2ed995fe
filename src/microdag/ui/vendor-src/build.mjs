// Bundles entry.js into ../static/vendor/codemirror.js (one minified ES module), and
// writes beside it LICENSE (the licence of every package in the bundle, from
// node_modules) and VERSIONS (name@version of each).  Run by build.sh after `npm ci`;
// the same lock file gives byte-identical files.
import { readFileSync, readdirSync, writeFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, "..", "static", "vendor");
mkdirSync(out, { recursive: true });

const result = await build({
  entryPoints: [join(here, "entry.js")],
  outfile: join(out, "codemirror.js"),
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2020",
  legalComments: "none",
  charset: "utf8",
  metafile: true,
  absWorkingDir: here,
  banner: { js: "// CodeMirror 6 for microdag's UI, built from ui/vendor-src by build.sh; licences in LICENSE, versions in VERSIONS." },
  logLevel: "warning",
});

// The packages whose files are in the bundle: node_modules/NAME or node_modules/@SCOPE/NAME.
const packages = new Set();
for (const input of Object.keys(result.metafile.inputs)) {
  const match = input.match(/(?:^|\/)node_modules\/((?:@[^/]+\/)?[^/]+)\//);
  if (match) packages.add(match[1]);
}
const names = [...packages].sort();
const versions = [];
const licences = [];
for (const name of names) {
  const root = join(here, "node_modules", name);
  const meta = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
  const file = readdirSync(root).sort().find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f));
  if (!file) throw new Error(`${name}: no licence file in its package`);
  versions.push(`${name}@${meta.version}`);
  const text = readFileSync(join(root, file), "utf8").replace(/\r\n/g, "\n").trim();
  licences.push(`${name}@${meta.version} (${meta.license})\n${"-".repeat(72)}\n${text}\n`);
}
writeFileSync(join(out, "VERSIONS"), versions.join("\n") + "\n");
writeFileSync(join(out, "LICENSE"),
  "The licences of the packages bundled in codemirror.js, one after the other.\n\n" + licences.join("\n"));
console.log(`codemirror.js: ${names.length} packages`);
