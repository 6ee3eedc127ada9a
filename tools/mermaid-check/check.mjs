#!/usr/bin/env node
// Checks Mermaid files with Mermaid's own parser (the official `mermaid`
// package, the same code that renders diagrams in a browser).
//
//   node tools/mermaid-check/check.mjs [--type sequence] [--dump] [--verbose] FILE.mmd [...]
//
// Exit 0: every file parses as a valid diagram (of the given type, with --type)
//         and is no longer than Mermaid's maxTextSize.
// Exit 1: at least one file does not; one line per bad file on stderr:
//         FILE: <Mermaid's message, on one line>
// Exit 2: usage error.
//
// --type T   also require the diagram type Mermaid detects to be T
//            (e.g. `sequence` for a `sequenceDiagram`).
// --dump     print, for each valid sequence diagram, one JSON line on stdout
//            with what Mermaid understood: participants and messages/notes,
//            with the text as it will be displayed (entity codes decoded).
//            Lets a test check that no text was cut or changed. (Raw HTML
//            tags are not sanitized here as in a browser: escape < and >.)
// --max-text-size N
//            fail a file longer than N characters (default 50000, Mermaid's
//            default maxTextSize: a longer diagram still parses, but Mermaid
//            draws "Maximum text size in diagram exceeded" instead of it, and
//            a diagram cannot raise the limit itself). 0: no limit.
// --verbose  print Mermaid's full multi-line message too.
// FILE `-`   reads standard input.
//
// Parsing needs no DOM (no jsdom): Mermaid's parsers are plain JavaScript, and
// DOMPurify, without a window, returns text unchanged instead of sanitizing it,
// which changes no parse result (rendering is render.mjs, in Chromium).
import { readFileSync } from 'node:fs';

const usage = 'usage: node check.mjs [--type TYPE] [--dump] [--max-text-size N] [--verbose] FILE.mmd [...]';
const files = [];
let wantType = null;
let dump = false;
let verbose = false;
let maxTextSize = 50000;
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  if (a === '--type') {
    wantType = argv[++i];
    if (!wantType) {
      console.error(usage);
      process.exit(2);
    }
  } else if (a.startsWith('--type=')) wantType = a.slice('--type='.length);
  else if (a === '--max-text-size' || a.startsWith('--max-text-size=')) {
    const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
    maxTextSize = Number(v);
    if (v === undefined || v === '' || !Number.isInteger(maxTextSize) || maxTextSize < 0) {
      console.error(`check.mjs: --max-text-size needs a whole number\n${usage}`);
      process.exit(2);
    }
  } else if (a === '--dump') dump = true;
  else if (a === '--verbose' || a === '-v') verbose = true;
  else if (a === '-h' || a === '--help') {
    console.log(usage);
    process.exit(0);
  } else if (a === '--') files.push(...argv.slice(i + 1)), (i = argv.length);
  else if (a.startsWith('-') && a !== '-') {
    console.error(`check.mjs: unknown option ${a}\n${usage}`);
    process.exit(2);
  } else files.push(a);
}
if (files.length === 0) {
  console.error(usage);
  process.exit(2);
}

// Mermaid logs parse errors itself at its default level; we report them.
const { default: mermaid } = await import('mermaid');
mermaid.initialize({ startOnLoad: false, logLevel: 'fatal' });

// Mermaid's text as displayed: its entity codes (`#59;`, `#lt;`) are kept as
// placeholders through parsing and turned into HTML entities when drawn.
const named = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'", nbsp: '\u00a0' };
function displayed(s) {
  if (typeof s !== 'string') return s;
  return s
    .replace(/\uFB02\u00B0\u00B0(\+?\d+)\u00B6\u00DF/g, (_, n) => String.fromCodePoint(Number(n)))
    .replace(/\uFB02\u00B0(\w+)\u00B6\u00DF/g, (m, n) => named[n] ?? `&${n};`);
}

function oneLine(err) {
  const msg = String(err?.message ?? err);
  const lines = msg.split('\n').map((l) => l.trim()).filter((l) => l && !/^-*\^$/.test(l));
  return lines.join(' | ');
}

async function describe(text) {
  const diagram = await mermaid.mermaidAPI.getDiagramFromText(text);
  const db = diagram.db;
  if (diagram.type !== 'sequence' || typeof db.getMessages !== 'function') {
    return { type: diagram.type };
  }
  const invert = (o) => Object.fromEntries(Object.entries(o ?? {}).map(([k, v]) => [v, k]));
  const names = invert(db.LINETYPE);
  const places = invert(db.PLACEMENT);
  const participants = [...db.getActors().values()].map((a) => ({
    id: a.name,
    label: displayed(a.description),
    kind: a.type,
  }));
  const messages = db.getMessages().map((m) => {
    const out = { kind: names[m.type] ?? m.type };
    if (m.from !== undefined) out.from = m.from;
    if (m.to !== undefined) out.to = m.to;
    if (m.message !== undefined) out.text = displayed(m.message);
    if (m.placement !== undefined) out.placement = places[m.placement] ?? m.placement;
    return out;
  });
  return { type: diagram.type, participants, messages };
}

let bad = 0;
for (const file of files) {
  let text;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    console.error(`${file}: cannot read: ${e.message}`);
    bad++;
    continue;
  }
  try {
    const res = await mermaid.parse(text); // throws on any error
    if (wantType && res.diagramType !== wantType) {
      console.error(`${file}: diagram type is ${res.diagramType}, expected ${wantType}`);
      bad++;
      continue;
    }
    if (maxTextSize && text.length > maxTextSize) {
      console.error(
        `${file}: ${text.length} characters, over Mermaid's maxTextSize of ${maxTextSize}: it parses, but Mermaid draws "Maximum text size in diagram exceeded" instead`,
      );
      bad++;
      continue;
    }
    if (dump) console.log(JSON.stringify({ file, ...(await describe(text)) }));
  } catch (e) {
    console.error(`${file}: ${oneLine(e)}`);
    if (verbose) console.error(String(e?.message ?? e).replace(/^/gm, '    '));
    bad++;
  }
}
process.exit(bad ? 1 : 0);
