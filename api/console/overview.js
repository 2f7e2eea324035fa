// The overview: counts, the oldest running saga, open dead letters, and the
// list of sagas found by the filters in the URL, a page at a time (cursor).
// Every row says what its saga waits for, from the list's own answer.
// Operators may select sagas in the list and act on each (bulk).

import { api, ApiError, sagaTypes, url } from './api.js';
import { h, fill, time, span, status, problem, shortId, limited } from './ui.js';

const TERMINAL = ['completed', 'compensated', 'cancelled'];
const STATUSES = ['running', 'compensating', 'suspended', 'completed', 'compensated', 'cancelled'];
const FILTERS = ['status', 'saga_type', 'business_key', 'stuck_for', 'created_from', 'created_to', 'limit'];
const BULK_ACTIONS = ['resume', 'retry', 'skip', 'compensate', 'cancel'];

export async function overview(main, params, session) {
  const query = {};
  for (const k of FILTERS) if (params.get(k)) query[k] = params.get(k);
  const cursor = params.get('cursor');
  const [stats, page, types, dead] = await Promise.all([
    api('/v1/stats'),
    api(url('/v1/sagas', { ...query, cursor })),
    sagaTypes(),
    session.can('admin') ? api('/v1/dead-letters?limit=500').catch(() => null) : null,
  ]);
  const selectable = session.can('operator');
  const selected = new Set();
  const bulk = h('section', { class: 'bulk', 'aria-live': 'polite' });

  const list = sagaTable(page.data.items, selectable, selected, () => bulkPanel(bulk, page.data.items, selected));
  fill(main,
    h('h1', {}, 'Overview'),
    summary(stats.data, dead && dead.data),
    h('h2', { id: 'sagas' }, 'Sagas'),
    filterForm(query, types),
    quickLinks(),
    list,
    pager(query, cursor, page.data.next_cursor),
    bulk);
  return null;
}

function summary(stats, dead) {
  const types = [...new Set(stats.counts.map((c) => c.saga_type))];
  const count = (t, s) => (stats.counts.find((c) => c.saga_type === t && c.status === s) || {}).count || 0;
  // No count of the finished sagas yet: the server is making the first.
  const uncounted = !stats.terminal_counted_at;
  const cell = (t, s) => {
    if (uncounted && TERMINAL.includes(s)) return h('td', { class: 'num muted', title: 'being counted' }, '…');
    const n = count(t, s);
    return h('td', { class: 'num' }, n ? h('a', { href: `#/?${new URLSearchParams({ saga_type: t, status: s })}` }, n.toLocaleString()) : '0');
  };
  const oldest = stats.oldest_unsettled;
  return h('section', { class: 'summary' },
    h('div', { class: 'cards' },
      h('a', { class: 'card', href: '#/?status=suspended' }, h('span', { class: 'big' }, stats.suspended.toLocaleString()), ' suspended'),
      h('div', { class: 'card' }, 'Oldest running: ',
        oldest ? [h('a', { href: `#/sagas/${oldest.id}` }, shortId(oldest.id)), ', started ', time(oldest.created_at), ` (${span(oldest.created_at)} ago)`] : 'none'),
      dead ? h('a', { class: 'card', href: '#/dead-letters' }, h('span', { class: 'big' }, `${dead.items.length}${dead.next_after ? '+' : ''}`), ' open dead letters') : null),
    h('div', { class: 'scroll' }, h('table', { class: 'counts' },
      h('caption', {}, 'Sagas by type and status', uncounted ? ' (finished sagas still being counted: reload in a moment)' : null),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'type'), STATUSES.map((s) => h('th', { scope: 'col' }, s)))),
      h('tbody', {}, types.length ? types.map((t) => h('tr', {}, h('th', { scope: 'row' }, t), STATUSES.map((s) => cell(t, s))))
        : h('tr', {}, h('td', { colspan: STATUSES.length + 1, class: 'muted' }, 'No sagas yet.'))))));
}

function quickLinks() {
  const q = (p) => `#/?${new URLSearchParams(p)}`;
  return h('p', { class: 'quick' }, 'Show: ',
    h('a', { href: q({ status: 'suspended' }) }, 'suspended'), ' · ',
    h('a', { href: q({ stuck_for: '15m' }) }, 'stuck for 15 min'), ' · ',
    h('a', { href: q({ status: 'running,compensating,suspended' }) }, 'not finished'), ' · ',
    h('a', { href: '#/' }, 'all, newest first'));
}

function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function filterForm(query, types) {
  const field = (name, label, control) => h('div', { class: 'field' }, h('label', { for: `f-${name}` }, label), control);
  const statusSel = h('select', { id: 'f-status', name: 'status', multiple: true, size: 3 },
    STATUSES.map((s) => h('option', { value: s, selected: (query.status || '').split(',').includes(s) }, s)));
  const typeSel = h('select', { id: 'f-saga_type', name: 'saga_type' }, h('option', { value: '' }, 'any'),
    types.map((t) => h('option', { value: t.saga_type, selected: query.saga_type === t.saga_type }, t.saga_type)));
  const text = (name, placeholder) => h('input', { id: `f-${name}`, name, value: query[name] || '', placeholder });
  const date = (name) => h('input', { id: `f-${name}`, name, type: 'datetime-local', value: toLocalInput(query[name]) });
  const form = h('form', { class: 'filters', onsubmit: (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    const statuses = [...statusSel.selectedOptions].map((o) => o.value);
    if (statuses.length) p.set('status', statuses.join(','));
    for (const name of ['saga_type', 'business_key', 'stuck_for', 'limit']) {
      const v = form.elements[name].value.trim();
      if (v) p.set(name, v);
    }
    for (const name of ['created_from', 'created_to']) {
      const v = form.elements[name].value;
      if (v) p.set(name, new Date(v).toISOString());
    }
    location.hash = `#/?${p}`;
  } },
  field('status', 'Status', statusSel),
  field('saga_type', 'Type', typeSel),
  field('business_key', 'Business key', text('business_key', 'order-1001')),
  field('stuck_for', 'Stuck for', text('stuck_for', '15m, 2h, 1d')),
  field('created_from', 'Created from', date('created_from')),
  field('created_to', 'Created before', date('created_to')),
  field('limit', 'Per page', text('limit', '50')),
  h('div', { class: 'field' }, h('button', { type: 'submit' }, 'Find')));
  return form;
}

function pager(query, cursor, next) {
  const p = (c) => `#/?${new URLSearchParams({ ...query, ...(c ? { cursor: c } : {}) })}`;
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    cursor ? h('a', { href: p(null) }, '« First page') : null,
    next ? h('a', { href: p(next), rel: 'next' }, 'Next page »') : h('span', { class: 'muted' }, 'Last page'));
}

/** The list. Each row of the page carries what its saga waits for (the
 * participant that must answer, the attempt of its budget, since when), so
 * no saga is read on its own. */
function sagaTable(items, selectable, selected, onSelect) {
  const rows = items.map((s) => {
    const finished = TERMINAL.includes(s.status);
    const box = selectable ? h('input', { type: 'checkbox', 'aria-label': `select ${s.business_key}`, disabled: finished, onchange: (ev) => {
      if (ev.target.checked) selected.add(s.id); else selected.delete(s.id);
      onSelect();
    } }) : null;
    return h('tr', { 'data-id': s.id },
      selectable ? h('td', {}, box) : null,
      h('td', {}, h('a', { href: `#/sagas/${s.id}`, class: 'mono', title: s.id }, shortId(s.id))),
      h('td', {}, s.saga_type),
      h('td', {}, s.business_key),
      h('td', {}, status(s.status)),
      h('td', {}, s.current_step || '—'),
      h('td', { class: 'participant' }, (!finished && s.participant) || '—'),
      h('td', { class: 'num attempt' }, attemptOf(s)),
      h('td', {}, s.step_since ? span(s.step_since) : '—'),
      h('td', {}, time(s.next_wake_at)),
      h('td', { class: 'error' }, s.last_error || ''),
      h('td', {}, time(s.created_at)));
  });
  return h('div', { class: 'scroll' }, h('table', { class: 'sagas' },
    h('thead', {}, h('tr', {},
      selectable ? h('th', { scope: 'col' }, h('span', { class: 'sr' }, 'select')) : null,
      ['saga', 'type', 'business key', 'status', 'waiting step', 'participant', 'attempt', 'in step for', 'next timer', 'last error', 'created']
        .map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.length ? rows
      : h('tr', {}, h('td', { colspan: 12, class: 'muted' }, 'No saga matches.')))));
}

/** `2 of 3`: the attempt of the current step and its budget. */
function attemptOf(s) {
  if (TERMINAL.includes(s.status) || s.attempt == null) return '—';
  return s.max_attempts ? `${s.attempt} of ${s.max_attempts}` : String(s.attempt);
}

/** Bulk: one action for every selected saga — a dry run of each first, then,
 * on confirmation, the action on each with the version previewed. */
function bulkPanel(section, items, selected) {
  if (!selected.size) return fill(section);
  const chosen = items.filter((s) => selected.has(s.id));
  const action = h('select', { id: 'bulk-action' }, BULK_ACTIONS.map((a) => h('option', { value: a }, a)));
  const assume = h('select', { id: 'bulk-assume' }, h('option', { value: 'succeeded' }, 'succeeded'), h('option', { value: 'failed' }, 'failed'));
  const reason = h('input', { id: 'bulk-reason', required: true, placeholder: 'why (recorded in each saga\'s history)' });
  const out = h('div', { 'aria-live': 'polite' });
  const body = () => {
    const b = { reason: reason.value.trim() };
    if (action.value === 'skip') b.assume = assume.value;
    return b;
  };
  const form = h('form', { class: 'act', onsubmit: async (ev) => {
    ev.preventDefault();
    const verb = action.value;
    const request = body();
    const results = chosen.map((s) => ({ s, etag: null, preview: null, error: null }));
    fill(out, h('p', { class: 'muted' }, 'Previewing…'));
    await limited(results, 4, async (r) => {
      try {
        const saga = await api(`/v1/sagas/${r.s.id}`);
        r.etag = saga.etag;
        r.preview = (await api(url(`/v1/sagas/${r.s.id}/actions/${verb}`, { dry_run: true }), { method: 'POST', body: request, ifMatch: r.etag })).data;
      } catch (e) {
        r.error = e;
      }
    });
    const ok = results.filter((r) => r.preview);
    const table = h('table', { class: 'results' },
      h('thead', {}, h('tr', {}, ['saga', 'preview', 'result'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, results.map((r) => {
        r.cell = h('td', {}, r.error ? '' : 'not done yet');
        return h('tr', {}, h('td', {}, h('a', { href: `#/sagas/${r.s.id}` }, r.s.business_key)),
          h('td', {}, r.error ? problem(r.error) : plan(r.preview)), r.cell);
      })));
    const confirm = h('button', { type: 'button', class: 'danger', disabled: !ok.length, onclick: async () => {
      confirm.disabled = true;
      await limited(ok, 4, async (r) => {
        try {
          const { data } = await api(`/v1/sagas/${r.s.id}/actions/${verb}`, { method: 'POST', body: request, ifMatch: r.etag });
          fill(r.cell, h('span', { class: 'ok' }, `done: ${data.status} at version ${data.version}`));
        } catch (e) {
          fill(r.cell, e instanceof ApiError && e.status === 412 ? staleNote(e) : problem(e));
        }
      });
    } }, `Confirm ${verb} for ${ok.length} saga${ok.length === 1 ? '' : 's'}`);
    fill(out, h('h3', {}, `Preview of ${verb}`), h('div', { class: 'scroll' }, table), confirm);
  } },
  h('h2', {}, `Act on ${chosen.length} selected saga${chosen.length === 1 ? '' : 's'}`),
  h('div', { class: 'field' }, h('label', { for: 'bulk-action' }, 'Action'), action),
  h('div', { class: 'field' }, h('label', { for: 'bulk-assume' }, 'Assume (skip)'), assume),
  h('div', { class: 'field grow' }, h('label', { for: 'bulk-reason' }, 'Reason'), reason),
  h('div', { class: 'field' }, h('button', { type: 'submit' }, 'Preview')));
  return fill(section, form, out);
}

/** What a dry run says the action would do. */
export function plan(result) {
  return h('div', { class: 'plan' },
    h('p', {}, `→ ${result.status} at version ${result.version}`),
    h('ul', {},
      result.events.map((e) => h('li', {}, 'would append ', h('code', {}, e.type))),
      result.commands.map((c) => h('li', {}, 'would send ', h('code', {}, `${c.step} #${c.attempt}`), ` to ${c.participant} (${c.command_type})`))));
}

export function staleNote(e) {
  const p = e.problem || {};
  return h('div', { class: 'problem', role: 'alert' }, h('strong', {}, 'Someone acted first. '), p.detail || 'The saga moved on since it was read.');
}
