#!/usr/bin/env node
// Renders Mermaid files with @mermaid-js/mermaid-cli in Debian's headless
// Chromium (never a browser that puppeteer downloads).
//
//   node tools/mermaid-check/render.mjs [--max-text-size N] FILE.mmd OUT.svg [FILE2.mmd OUT2.png ...]
//
// The output format follows OUT's extension: .svg, .png or .pdf.
// --max-text-size N: Mermaid's maxTextSize (default 50000); a longer file
// fails here instead of being drawn as "Maximum text size in diagram exceeded".
// Exit 0: all rendered. Exit 1: a diagram failed (one line per failure on
// stderr: FILE: message). Exit 2: usage error.
// Exit 77 ("skipped: ..."): chromium or the render packages are not
// installed (apt-get install chromium; bash tools/mermaid-check/install.sh --render).
//
// Chromium: $PUPPETEER_EXECUTABLE_PATH, else puppeteer-config.json's
// executablePath (/usr/bin/chromium).
import { accessSync, constants, readFileSync, writeFileSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const SKIP = 77;
const usage = 'usage: node render.mjs [--max-text-size N] FILE.mmd OUT.svg|OUT.png|OUT.pdf [FILE.mmd OUT ...]';

const args = process.argv.slice(2);
let maxTextSize = 50000;
const m = args[0]?.match(/^--max-text-size(?:=(.*))?$/);
if (m) {
  const v = m[1] ?? args[1];
  args.splice(0, m[1] === undefined ? 2 : 1);
  maxTextSize = Number(v);
  if (v === undefined || !Number.isInteger(maxTextSize) || maxTextSize <= 0) {
    console.error(`render.mjs: --max-text-size needs a positive whole number\n${usage}`);
    process.exit(2);
  }
}
if (args.includes('-h') || args.includes('--help')) {
  console.log(usage);
  process.exit(0);
}
if (args.length === 0 || args.length % 2 !== 0) {
  console.error(usage);
  process.exit(2);
}
const jobs = [];
for (let i = 0; i < args.length; i += 2) {
  const format = extname(args[i + 1]).slice(1).toLowerCase();
  if (!['svg', 'png', 'pdf'].includes(format)) {
    console.error(`render.mjs: ${args[i + 1]}: output must end in .svg, .png or .pdf`);
    process.exit(2);
  }
  jobs.push({ input: args[i], output: args[i + 1], format });
}

const launch = JSON.parse(readFileSync(join(here, 'puppeteer-config.json'), 'utf8'));
if (process.env.PUPPETEER_EXECUTABLE_PATH) launch.executablePath = process.env.PUPPETEER_EXECUTABLE_PATH;
try {
  accessSync(launch.executablePath, constants.X_OK);
} catch {
  console.error(`render.mjs: skipped: chromium not installed (${launch.executablePath}; apt-get install chromium)`);
  process.exit(SKIP);
}

let puppeteer, renderMermaid;
try {
  ({ default: puppeteer } = await import('puppeteer'));
  ({ renderMermaid } = await import('@mermaid-js/mermaid-cli'));
} catch (e) {
  console.error(
    `render.mjs: skipped: @mermaid-js/mermaid-cli/puppeteer not installed (bash tools/mermaid-check/install.sh --render): ${e.code ?? e.message}`,
  );
  process.exit(SKIP);
}

// Mermaid's message on one line, without the caret line and the browser's stack.
function oneLine(err) {
  return String(err?.message ?? err)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !/^-*\^$/.test(l) && !/^(at )?\S.*\(\S+:\d+:\d+\)$/.test(l) && !/^at \S+$/.test(l))
    .join(' | ');
}

let failed = 0;
const browser = await puppeteer.launch(launch);
try {
  for (const { input, output, format } of jobs) {
    try {
      const definition = readFileSync(input, 'utf8');
      if (definition.length > maxTextSize) {
        throw new Error(`${definition.length} characters, over maxTextSize ${maxTextSize} (--max-text-size N raises it)`);
      }
      const { data } = await renderMermaid(browser, definition, format, {
        backgroundColor: 'white',
        mermaidConfig: { theme: 'default', maxTextSize },
      });
      writeFileSync(output, data);
    } catch (e) {
      console.error(`${input}: ${oneLine(e)}`);
      failed++;
    }
  }
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
