#!/usr/bin/env node
// Self-test of check.mjs against the installed mermaid: fixtures/good.mmd
// passes, fixtures/bad.mmd fails naming the file, and fixtures/escapes.mmd
// shows exactly the texts the README's escaping rules promise.
//   node tools/mermaid-check/selftest.mjs
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const check = (...args) => spawnSync(process.execPath, [join(here, 'check.mjs'), ...args], { encoding: 'utf8' });
const fx = (name) => join(here, 'fixtures', name);
let passed = 0;
let failed = 0;
function expect(name, ok, detail) {
  if (ok) passed++;
  else {
    failed++;
    console.error(`FAIL ${name}: ${detail}`);
  }
}

let r = check('--type', 'sequence', fx('good.mmd'));
expect('good.mmd passes', r.status === 0, r.stderr);

r = check(fx('bad.mmd'));
expect('bad.mmd fails', r.status === 1, `exit ${r.status}`);
expect('bad.mmd names file and Mermaid error', /bad\.mmd: Parse error on line 5: .*Expecting/.test(r.stderr), r.stderr);
expect('one line per bad file', r.stderr.trim().split('\n').length === 1, r.stderr);

r = check('--dump', fx('escapes.mmd'));
expect('escapes.mmd passes', r.status === 0, r.stderr);
if (r.status === 0) {
  const d = JSON.parse(r.stdout);
  const got = [...d.participants.map((p) => p.label), ...d.messages.map((m) => m.text)];
  const want = [
    'Client[fd00::2]:40000',
    'Server ; 50% #1 <b>',
    'PSH-ACK "a;b #c 100%%{x}%% <br> R&D&amp;" (24 bytes)',
    'wrap: not an option',
    'style x:#y',
    ' padded ',
  ];
  expect('escapes.mmd texts', JSON.stringify(got) === JSON.stringify(want), `got ${JSON.stringify(got)}`);
}

console.log(failed ? `mermaid-check selftest FAILED (${failed} of ${passed + failed} checks)` : `mermaid-check selftest ok (${passed} checks)`);
process.exit(failed ? 1 : 0);
