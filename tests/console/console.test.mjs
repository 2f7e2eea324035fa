// End-to-end tests of the operator console in headless Chromium, against a
// running `sagaplane serve` on 127.0.0.1. The Rust test `console` (tests/console.rs)
// sets up the data and runs this with:
//   SAGAPLANE_URL        the server, e.g. http://127.0.0.1:40123
//   VIEWER_TOKEN, OPERATOR_TOKEN, ADMIN_TOKEN
//   RESUME_SAGA          a suspended saga whose failed step now succeeds
//   STALE_SAGA           another suspended saga, for the stale-page 412
//   VIEW_SAGA            a running saga (waiting for a reply), for the viewer
//   BULK_SAGAS           two more suspended sagas (comma-separated), resumed together
//   DEAD_LETTER          the id of a dead letter that a redrive applies
//   DISCARD_LETTER       the id of a dead letter nothing can use, for a discard
//   SKIP_SAGA            a running saga waiting for a reply, skipped as failed
//   KEYBOARD_SAGA        another, cancelled with the keyboard alone
//   MIGRATE_SAGA         another, under version 1 of its definition (2 is loaded)
//   ARTIFACTS            where screenshots go
// Every request the browser makes is logged; any that leaves the server's
// origin fails the run.

import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env('SAGAPLANE_URL');
const ORIGIN = new URL(BASE).origin;
const ARTIFACTS = env('ARTIFACTS');
mkdirSync(ARTIFACTS, { recursive: true });

// Playwright starts Chromium with a fresh, temporary profile of its own.
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});

const requests = [];
const failures = [];

async function page(token, viewport = { width: 1366, height: 900 }, timezoneId = 'Europe/Berlin') {
  const context = await browser.newContext({ viewport, timezoneId, locale: 'en-GB' });
  const p = await context.newPage();
  p.on('request', (r) => requests.push(r.url()));
  p.on('pageerror', (e) => failures.push(`page error: ${e.message}`));
  // A refused request (401 before signing in, the 412) is logged by the
  // browser as a failed load; the console handles those. Anything else fails.
  p.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource: the server responded with a status of (401|412)/.test(m.text())) {
      failures.push(`console error: ${m.text()}`);
    }
  });
  p.setDefaultTimeout(15000);
  await p.goto(`${BASE}/console/`);
  if (token) {
    await p.getByLabel('Token').fill(token);
    await p.getByRole('button', { name: 'Sign in' }).click();
    await p.getByRole('heading', { name: 'Overview' }).waitFor();
  }
  return p;
}

// Goes to a console route once signed in, and returns when the page shows it.
// A change of the hash alone is a same-document navigation: the page still
// shows the previous route until the new one has been fetched and drawn.
async function visit(p, hash) {
  await p.goto(`${BASE}/console/#${hash}`);
  await p.waitForFunction(() => {
    const want = location.hash.replace(/^#/, '') || '/';
    return document.getElementById('main').dataset.route === want;
  });
}

async function shot(p, name) {
  await p.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** The API, from Node, as another operator would use it. */
async function call(method, path, token, body, headers = {}) {
  const r = await fetch(`${BASE}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: r.status, body: await r.json().catch(() => null) };
}

const tests = {
  async 'an operator finds a suspended saga, sees why, previews resume and confirms it'() {
    const id = env('RESUME_SAGA');
    const p = await page(env('OPERATOR_TOKEN'));
    const before = requests.length;
    await p.getByRole('link', { name: 'suspended', exact: true }).click();
    await p.waitForURL(/status=suspended/);
    const row = p.locator(`tr[data-id="${id}"]`);
    await row.waitFor();
    assert.match(await row.textContent(), /suspended/);
    // The row says who must answer and the attempt of its budget, from the
    // list's own answer: no saga of the page is read on its own.
    assert.equal(await row.locator('td.participant').textContent(), 'inventory');
    assert.equal(await row.locator('td.attempt').textContent(), '2 of 2');
    const reads = requests.slice(before).filter((u) => /\/v1\/sagas\/[0-9a-f-]{36}/.test(u));
    assert.deepEqual(reads, [], 'the overview read sagas one by one');
    await shot(p, 'console-overview-suspended');
    await row.getByRole('link').click();
    await p.waitForURL(new RegExp(`#/sagas/${id}`));
    const why = p.locator('section.why');
    await why.getByText('waiting for an operator', { exact: false }).waitFor();
    assert.match(await why.textContent(), /inventory must answer release-inventory \(attempt 2 of 2\)/);
    await p.getByRole('button', { name: 'resume', exact: true }).click();
    await p.getByLabel('Reason').fill('inventory fixed the lock, INC-4711');
    await p.getByRole('button', { name: 'Preview' }).click();
    const preview = p.locator('.preview');
    await preview.getByText('Dry run of resume').waitFor();
    const text = await preview.textContent();
    assert.match(text, /would append OperatorIntervened/);
    assert.match(text, /would send release-inventory #3 to inventory \(order\.inventory\.release\.v1\)/);
    await shot(p, 'console-resume-preview');
    await p.getByRole('button', { name: 'Confirm resume' }).click();
    // It moves by itself: the page polls until the compensation is through.
    await p.locator('section.head .status-compensated').waitFor({ timeout: 20000 });
    await p.locator('.row .end.reached', { hasText: 'compensated' }).waitFor();
    const timeline = await p.locator('section.timeline').textContent();
    assert.match(timeline, /OperatorIntervened/);
    assert.match(timeline, /InventoryReleased/);
    await shot(p, 'console-saga-compensated');
    await p.context().close();
  },

  async 'a stale page gets the 412 explained and shows the saga as it is now'() {
    const id = env('STALE_SAGA');
    const p = await page(env('OPERATOR_TOKEN'));
    await visit(p, `/sagas/${id}`);
    await p.getByRole('button', { name: 'cancel', exact: true }).click();
    await p.getByLabel('Reason').fill('customer gave up');
    await p.getByRole('button', { name: 'Preview' }).click();
    await p.getByText('Dry run of cancel').waitFor();
    // Meanwhile someone else resumes it.
    const other = await call('POST', `/v1/sagas/${id}/actions/resume`, env('ADMIN_TOKEN'), { reason: 'fixed on our side' });
    assert.equal(other.status, 200, JSON.stringify(other.body));
    await p.getByRole('button', { name: 'Confirm cancel' }).click();
    const notice = p.getByRole('alert').filter({ hasText: 'Someone acted first' });
    await notice.waitFor();
    assert.match(await notice.textContent(), /Nothing was done/);
    // The page now shows the saga after the other operator's resume.
    await p.locator('section.timeline').getByText('OperatorIntervened', { exact: true }).first().waitFor();
    await shot(p, 'console-stale-412');
    const saga = await call('GET', `/v1/sagas/${id}`, env('ADMIN_TOKEN'));
    assert.notEqual(saga.body.status, 'cancelled');
    await p.context().close();
  },

  async 'an operator selects several sagas, previews one action for each, and confirms'() {
    const ids = env('BULK_SAGAS').split(',');
    const p = await page(env('OPERATOR_TOKEN'));
    await visit(p, `/?status=suspended`);
    for (const id of ids) await p.locator(`tr[data-id="${id}"] input[type=checkbox]`).check();
    await p.getByRole('heading', { name: 'Act on 2 selected sagas' }).waitFor();
    await p.getByLabel('Action').selectOption('resume');
    await p.getByLabel('Reason').fill('inventory fixed the lock, INC-4712');
    await p.getByRole('button', { name: 'Preview' }).click();
    const results = p.locator('table.results');
    await results.waitFor();
    assert.equal(await results.getByText('would send release-inventory #3 to inventory', { exact: false }).count(), 2);
    await p.getByRole('button', { name: 'Confirm resume for 2 sagas' }).click();
    await results.getByText('done: ', { exact: false }).nth(1).waitFor();
    assert.equal(await results.getByText('done: ', { exact: false }).count(), 2);
    await shot(p, 'console-bulk');
    for (const id of ids) {
      const saga = await call('GET', `/v1/sagas/${id}?wait=10`, env('ADMIN_TOKEN'));
      assert.equal(saga.body.status, 'compensated');
    }
    await p.context().close();
  },

  async 'a viewer sees everything but no action'() {
    const id = env('VIEW_SAGA');
    const p = await page(env('VIEWER_TOKEN'));
    assert.equal(await p.locator('table.sagas input[type=checkbox]').count(), 0);
    assert.equal(await p.getByRole('link', { name: 'Dead letters' }).count(), 0);
    await visit(p, `/sagas/${id}`);
    await p.locator('section.why').getByText('waiting for the reply', { exact: false }).waitFor();
    await p.locator('section.timeline').getByText('SagaStarted', { exact: true }).waitFor();
    assert.equal(await p.locator('section.actions button').count(), 0);
    assert.equal(await p.locator('main button[data-action]').count(), 0);
    // The API refuses anyway.
    const r = await call('POST', `/v1/sagas/${id}/actions/cancel`, env('VIEWER_TOKEN'), { reason: 'x' });
    assert.equal(r.status, 403);
    await shot(p, 'console-viewer');
    await p.context().close();
  },

  async 'an admin reads a dead letter as text and hex and redrives it'() {
    const id = env('DEAD_LETTER');
    const p = await page(env('ADMIN_TOKEN'));
    await p.getByRole('link', { name: 'Dead letters' }).first().click();
    await p.getByRole('link', { name: `#${id}`, exact: true }).click();
    await p.getByRole('heading', { name: `Dead letter #${id}` }).waitFor();
    assert.match(await p.locator('pre.raw').first().textContent(), /sagaplane\.reply\.v1/);
    assert.match(await p.locator('pre.hex').textContent(), /^00000000 {2}7b/);
    await p.getByRole('button', { name: 'Redrive' }).click();
    await p.getByLabel('Reason').fill('the saga exists now');
    await p.getByRole('button', { name: 'Confirm redrive' }).click();
    await p.getByText('Redriven: applied.').waitFor();
    await p.getByText('redriven by admin-user').waitFor();
    await shot(p, 'console-dead-letter');
    await p.context().close();
  },

  async 'an admin discards a dead letter with a reason'() {
    const id = env('DISCARD_LETTER');
    const p = await page(env('ADMIN_TOKEN'));
    await visit(p, `/dead-letters/${id}`);
    await p.getByRole('heading', { name: `Dead letter #${id}` }).waitFor();
    assert.match(await p.locator('pre.raw').first().textContent(), /"hello"/);
    await p.getByRole('button', { name: 'Discard' }).click();
    // No reason, no discard: the form asks for one.
    await p.getByRole('button', { name: 'Confirm discard' }).click();
    assert.equal((await call('GET', `/v1/dead-letters/${id}`, env('ADMIN_TOKEN'))).body.resolution, null);
    await p.getByLabel('Reason').fill('test traffic from the load generator');
    await p.getByRole('button', { name: 'Confirm discard' }).click();
    await p.getByText('Discarded.', { exact: true }).waitFor();
    await p.getByText('discarded by admin-user').waitFor();
    assert.match(await p.locator('dl.facts').textContent(), /“test traffic from the load generator”/);
    // Resolved: no button offers to act again, and the API agrees.
    assert.equal(await p.getByRole('button', { name: 'Redrive' }).count(), 0);
    const letter = await call('GET', `/v1/dead-letters/${id}`, env('ADMIN_TOKEN'));
    assert.equal(letter.body.resolution, 'discarded');
    assert.equal(letter.body.resolved_note, 'test traffic from the load generator');
    await shot(p, 'console-dead-letter-discarded');
    // The open list no longer has it.
    await visit(p, `/dead-letters`);
    await p.getByRole('heading', { name: 'Dead letters' }).waitFor();
    assert.equal(await p.getByRole('link', { name: `#${id}`, exact: true }).count(), 0);
    await p.context().close();
  },

  async 'an operator skips a step, assuming it failed, and the saga compensates'() {
    const id = env('SKIP_SAGA');
    const p = await page(env('OPERATOR_TOKEN'));
    await visit(p, `/sagas/${id}`);
    await p.locator('section.why').getByText('waiting for the reply', { exact: false }).waitFor();
    await p.getByRole('button', { name: 'skip', exact: true }).click();
    await p.getByLabel('Reason').fill('inventory says the reservation never happened');
    await p.getByLabel('Assume the step').selectOption('failed');
    await p.getByRole('button', { name: 'Preview' }).click();
    const preview = p.locator('.preview');
    await preview.getByText('Dry run of skip').waitFor();
    const text = await preview.textContent();
    assert.match(text, /would append OperatorIntervened/);
    assert.match(text, /would append StepFailed/);
    assert.doesNotMatch(text, /InventoryReserved/);
    await shot(p, 'console-skip-preview');
    await p.getByRole('button', { name: 'Confirm skip' }).click();
    await p.getByRole('status').filter({ hasText: 'skip done' }).waitFor();
    await p.locator('section.head .status-compensated').waitFor({ timeout: 20000 });
    const intervened = await call('GET', `/v1/sagas/${id}/events`, env('ADMIN_TOKEN'));
    const audit = intervened.body.find((e) => e.type === 'OperatorIntervened');
    assert.deepEqual(audit.data.action, { action: 'skip', assume: 'failed' });
    await p.context().close();
  },

  async 'an operator migrates a saga to version 2 of its definition'() {
    const id = env('MIGRATE_SAGA');
    const p = await page(env('OPERATOR_TOKEN'));
    await visit(p, `/sagas/${id}`);
    const facts = p.locator('section.head dl.facts');
    await facts.getByText('definition version 1').waitFor();
    assert.equal(await p.locator('.row.forward li.step', { hasText: 'notify-customer' }).count(), 0);
    await p.getByRole('button', { name: 'migrate', exact: true }).click();
    await p.getByLabel('Reason').fill('version 2 notifies the customer');
    await p.getByLabel('To version').fill('2');
    await p.getByRole('button', { name: 'Preview' }).click();
    const preview = p.locator('.preview');
    await preview.getByText('Dry run of migrate').waitFor();
    assert.match(await preview.textContent(), /would append SagaMigrated/);
    await p.getByRole('button', { name: 'Confirm migrate' }).click();
    await p.getByRole('status').filter({ hasText: 'migrate done' }).waitFor();
    await facts.getByText('definition version 2').waitFor();
    // The diagram is version 2's: one step more.
    await p.locator('.row.forward li.step', { hasText: 'notify-customer' }).waitFor();
    await p.locator('section.timeline').getByText('SagaMigrated', { exact: true }).waitFor();
    await shot(p, 'console-migrated');
    await p.context().close();
  },

  async 'an operator finds a saga and cancels it with the keyboard alone'() {
    const id = env('KEYBOARD_SAGA');
    const p = await page(env('OPERATOR_TOKEN'));
    const focused = () => p.evaluate(() => {
      const el = document.activeElement;
      const row = el && el.closest('tr[data-id]');
      return { tag: el ? el.tagName : null, id: el ? el.id : null, action: el ? el.dataset.action || null : null,
        row: row ? row.dataset.id : null, text: el ? el.textContent.trim() : null };
    });
    /** Presses Tab until `wanted(focused)` holds; fails after 80. */
    const tabTo = async (what, wanted) => {
      for (let i = 0; i < 80; i++) {
        await p.keyboard.press('Tab');
        if (wanted(await focused())) return;
      }
      throw new Error(`Tab never reached ${what}`);
    };
    await visit(p, `/?status=running&saga_type=order`);
    await p.locator(`tr[data-id="${id}"]`).waitFor();
    await tabTo('the saga\'s link', (f) => f.tag === 'A' && f.row === id);
    // Whatever has the focus is shown to have it.
    const outline = await p.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, 'none', 'the focused link shows no outline');
    await p.keyboard.press('Enter');
    await p.waitForURL(new RegExp(`#/sagas/${id}`));
    await p.locator('section.actions button[data-action]').first().waitFor();
    await tabTo('the cancel button', (f) => f.action === 'cancel');
    await shot(p, 'console-keyboard-focus');
    await p.keyboard.press('Enter');
    // The form takes the focus at its reason.
    assert.equal((await focused()).id, 'reason');
    await p.keyboard.type('customer called: cancel without refund');
    await tabTo('Preview', (f) => f.tag === 'BUTTON' && f.text === 'Preview');
    await p.keyboard.press('Enter');
    await p.locator('.preview').getByText('Dry run of cancel').waitFor();
    // The dry run hands the focus to its confirmation.
    assert.equal((await focused()).id, 'confirm');
    await p.keyboard.press('Enter');
    await p.getByRole('status').filter({ hasText: 'cancel done' }).waitFor();
    await p.locator('section.head .status-cancelled').waitFor();
    await p.context().close();
  },

  async 'times are shown in the viewer\'s zone, UTC on hover'() {
    const id = env('VIEW_SAGA');
    const zone = 'Asia/Kolkata';
    const p = await page(env('VIEWER_TOKEN'), undefined, zone);
    await visit(p, `/sagas/${id}`);
    const created = p.locator('section.head dl.facts time').first();
    await created.waitFor();
    const iso = await created.getAttribute('datetime');
    const saga = await call('GET', `/v1/sagas/${id}`, env('VIEWER_TOKEN'));
    assert.equal(iso, saga.body.created_at);
    const at = new Date(iso);
    const format = (timeZone) => new Intl.DateTimeFormat('en-GB', {
      timeZone, year: 'numeric', month: 'short', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    }).format(at);
    // Shown in the viewer's zone (UTC+05:30, so never the UTC wall clock) …
    assert.equal(await created.textContent(), format(zone));
    assert.notEqual(format(zone), format('UTC'));
    // … with the instant in UTC on hover.
    await created.hover();
    assert.equal(await created.getAttribute('title'), `${at.toISOString()} (UTC)`);
    // The list too.
    await visit(p, `/`);
    const listed = p.locator(`tr[data-id="${id}"] td:last-child time`);
    assert.equal(await listed.textContent(), format(zone));
    assert.equal(await listed.getAttribute('title'), `${at.toISOString()} (UTC)`);
    await listed.hover();
    await shot(p, 'console-time-zone');
    await p.context().close();
  },

  async 'a created range in the URL narrows the list'() {
    const all = await call('GET', '/v1/sagas?limit=500', env('VIEWER_TOKEN'));
    // Oldest first; a window in the middle, from one saga's creation (kept)
    // to a later one's (left out).
    const sagas = all.body.items.slice().reverse();
    assert.ok(sagas.length >= 8, `${sagas.length} sagas`);
    const range = { created_from: sagas[2].created_at, created_to: sagas[6].created_at };
    const expected = await call('GET', `/v1/sagas?${new URLSearchParams(range)}`, env('VIEWER_TOKEN'));
    const inside = expected.body.items.map((s) => s.id);
    assert.ok(inside.includes(sagas[2].id) && !inside.includes(sagas[6].id) && !inside.includes(sagas[1].id));
    const p = await page(env('VIEWER_TOKEN'));
    await visit(p, `/?${new URLSearchParams(range)}`);
    await p.locator(`tr[data-id="${sagas[2].id}"]`).waitFor();
    const shown = await p.locator('table.sagas tbody tr[data-id]').evaluateAll((rows) => rows.map((r) => r.dataset.id));
    assert.deepEqual(shown, inside);
    assert.ok(shown.length < sagas.length, 'the range left nothing out');
    // The form shows the range it was given, to the minute, in the viewer's zone.
    assert.match(await p.getByLabel('Created from').inputValue(), /^\d{4}-\d\d-\d\dT\d\d:\d\d$/);
    assert.match(await p.getByLabel('Created before').inputValue(), /^\d{4}-\d\d-\d\dT\d\d:\d\d$/);
    await shot(p, 'console-created-range');
    await p.context().close();
  },

  async 'a slow answer for a route already left does not replace the route shown'() {
    const id = env('VIEW_SAGA');
    const p = await page(env('VIEWER_TOKEN'));
    // Hold the saga page's first request until the operator has moved on.
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    let caught;
    const holding = new Promise((resolve) => { caught = resolve; });
    let first = true;
    await p.route(`${BASE}/v1/sagas/${id}`, async (r) => {
      if (first) {
        first = false;
        caught();
        await held;
      }
      await r.continue();
    });
    await p.goto(`${BASE}/console/#/sagas/${id}`);
    await holding;
    await visit(p, '/?status=compensated');
    // The held answer arrives, the events after it; the saga page they would
    // draw must not appear.
    const events = p.waitForResponse((r) => r.url().startsWith(`${BASE}/v1/sagas/${id}/events`));
    release();
    await events;
    await p.waitForTimeout(200);
    assert.equal(await p.locator('section.why').count(), 0);
    assert.equal(await p.getByRole('heading', { name: 'Overview' }).count(), 1);
    assert.equal(await p.evaluate(() => document.getElementById('main').dataset.route), '/?status=compensated');
    await p.context().close();
  },

  async 'while the finished sagas are being counted the overview says so and counts the rest'() {
    const p = await page(env('VIEWER_TOKEN'));
    // The server's own answer, as a large store gives it before its first
    // count of finished sagas is made: those left out, no time of count.
    const finished = ['completed', 'compensated', 'cancelled'];
    let real;
    await p.route(`${BASE}/v1/stats`, async (r) => {
      const response = await r.fetch();
      real = await response.json();
      await r.fulfill({
        response,
        json: { ...real, counts: real.counts.filter((c) => !finished.includes(c.status)), terminal_counted_at: null },
      });
    });
    await p.reload();
    const table = p.locator('table.counts');
    await table.locator('caption', { hasText: 'finished sagas still being counted' }).waitFor();
    const cells = await table.locator('tbody tr', { has: p.locator('th', { hasText: /^order$/ }) }).locator('td').allTextContents();
    const count = (s) => String((real.counts.find((c) => c.saga_type === 'order' && c.status === s) || { count: 0 }).count);
    assert.deepEqual(cells, [count('running'), count('compensating'), count('suspended'), '…', '…', '…']);
    await p.context().close();
  },

  async 'the skip link moves the focus to the content and keeps the route'() {
    const id = env('VIEW_SAGA');
    const p = await page(env('VIEWER_TOKEN'));
    await visit(p, `/sagas/${id}`);
    await p.locator('a.skip').focus();
    await p.keyboard.press('Enter');
    await p.waitForFunction(() => document.activeElement && document.activeElement.id === 'main');
    assert.equal(await p.evaluate(() => location.hash), `#/sagas/${id}`);
    assert.equal(await p.evaluate(() => document.getElementById('main').dataset.route), `/sagas/${id}`);
    assert.equal(await p.locator('section.why').count(), 1);
    await p.context().close();
  },

  async 'it stays usable at phone width'() {
    const p = await page(env('VIEWER_TOKEN'), { width: 390, height: 844 });
    await visit(p, `/sagas/${env('VIEW_SAGA')}`);
    await p.locator('section.why').getByText('must answer', { exact: false }).waitFor();
    // Waiting for its first reply, it has one event, and the heading says so.
    await p.getByRole('heading', { name: 'Timeline (1 event)', exact: true }).waitFor();
    const width = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 400, `the page is ${width}px wide at a 390px window`);
    await shot(p, 'console-phone');
    await p.context().close();
  },
};

let failed = 0;
try {
  for (const [name, test] of Object.entries(tests)) {
    const started = Date.now();
    try {
      await test();
      console.log(`ok   ${name} (${Date.now() - started} ms)`);
    } catch (e) {
      failed++;
      console.log(`FAIL ${name}\n${e.stack}`);
    }
  }
} finally {
  await browser.close();
}

const foreign = requests.filter((u) => !u.startsWith(`${ORIGIN}/`) && !u.startsWith('data:'));
if (foreign.length) {
  failed++;
  console.log(`FAIL requests left ${ORIGIN}:\n${foreign.join('\n')}`);
} else {
  console.log(`ok   all ${requests.length} requests of the browser went to ${ORIGIN}`);
}
const tokens = ['VIEWER_TOKEN', 'OPERATOR_TOKEN', 'ADMIN_TOKEN'].map((n) => process.env[n]);
const leaked = requests.filter((u) => tokens.some((t) => u.includes(t)));
if (leaked.length) {
  failed++;
  console.log(`FAIL a token appeared in a URL:\n${leaked.join('\n')}`);
}
if (failures.length) {
  failed++;
  console.log(`FAIL the page reported errors:\n${failures.join('\n')}`);
}
console.log(failed ? `${failed} failed` : 'all passed');
process.exit(failed ? 1 : 0);
