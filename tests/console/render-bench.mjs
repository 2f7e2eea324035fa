// Measures how long the console's overview takes to show a page of sagas, in
// headless Chromium, against a running server (see BENCHMARKS.md, "Console").
//   SAGAPLANE_URL  the server;  TOKEN  a viewer's token (or none: open API)
//   ROUTES         fragments to measure, comma-separated (default: all newest
//                  first, and the suspended ones)
//   RUNS           runs per route (default 7; the first is a warm-up, left out)
// For each run: from navigation to the 50 rows in the page ("rows"), and until
// every unfinished row was filled in from its own read ("filled").

import { chromium } from 'playwright-core';

const BASE = process.env.SAGAPLANE_URL;
const TOKEN = process.env.TOKEN || '';
const ROUTES = (process.env.ROUTES || '#/,#/?status=suspended').split(',');
const RUNS = Number(process.env.RUNS || 7);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const context = await browser.newContext({ viewport: { width: 1366, height: 900 } });
if (TOKEN) await context.addInitScript((t) => sessionStorage.setItem('sagaplane.token', t), TOKEN);
const page = await context.newPage();

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const route of ROUTES) {
  const rows = [];
  const filled = [];
  for (let i = 0; i < RUNS; i++) {
    await page.goto('about:blank');
    const started = Date.now();
    await page.goto(`${BASE}/console/${route}`);
    await page.waitForFunction(() => document.querySelectorAll('table.sagas tbody tr[data-id]').length === 50);
    const r = Date.now() - started;
    await page.waitForFunction(() => ![...document.querySelectorAll('td.participant')].some((td) => td.textContent === '…'));
    const f = Date.now() - started;
    if (i > 0) { rows.push(r); filled.push(f); }
  }
  console.log(`${route}: rows ${rows.join(', ')} ms (median ${median(rows)}); filled ${filled.join(', ')} ms (median ${median(filled)})`);
}
await browser.close();
