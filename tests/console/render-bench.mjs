// Measures how long the console's overview takes to show a page of sagas, in
// headless Chromium, against a running server (see BENCHMARKS.md, "Console").
//   SAGAPLANE_URL  the server;  TOKEN  a viewer's token (or none: open API)
//   ROUTES         fragments to measure, comma-separated (default: all newest
//                  first, and the suspended ones)
//   RUNS           runs per route (default 7; the first is a warm-up, left out)
// For each run: from navigation until the 50 rows are in the page, every
// unfinished one with the participant it waits for; and how many requests
// the browser made to the API for it.

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
let calls = 0;
page.on('request', (r) => { if (new URL(r.url()).pathname.startsWith('/v1/')) calls++; });

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const route of ROUTES) {
  const rows = [];
  const requests = [];
  for (let i = 0; i < RUNS; i++) {
    await page.goto('about:blank');
    calls = 0;
    const started = Date.now();
    await page.goto(`${BASE}/console/${route}`);
    await page.waitForFunction(() => {
      const shown = [...document.querySelectorAll('table.sagas tbody tr[data-id]')];
      const open = shown.filter((tr) => !/completed|compensated|cancelled/.test(tr.querySelector('.status').textContent));
      return shown.length === 50 && open.every((tr) => tr.querySelector('td.participant').textContent !== '—');
    });
    const r = Date.now() - started;
    if (i > 0) { rows.push(r); requests.push(calls); }
  }
  console.log(`${route}: rows ${rows.join(', ')} ms (median ${median(rows)}); API requests per load ${[...new Set(requests)].join(', ')}`);
}
await browser.close();
