// One saga: header, why it waits, actions (dry run → confirm, with If-Match),
// a diagram of its steps, and its timeline with the state after each event,
// the commands each step sent and the reply that caused it. It polls the API
// every 2 seconds while the saga is not finished and redraws when its version
// (ETag) changed.

import { api, ApiError, sagaTypes, url } from './api.js';
import { h, fill, time, span, status, json, problem } from './ui.js';
import { plan, staleNote } from './overview.js';

const TERMINAL = ['completed', 'compensated', 'cancelled'];
const POLL_MS = 2000;

export async function sagaPage(main, id, session) {
  const page = {
    id, session, saga: null, etag: null, events: [], selected: null, panel: null,
    head: h('section', { class: 'head' }),
    why: h('section', { class: 'why', 'aria-live': 'polite' }),
    actions: h('section', { class: 'actions' }),
    notice: h('div', { 'aria-live': 'assertive', tabindex: -1 }),
    diagram: h('section', { class: 'diagram' }),
    timeline: h('section', { class: 'timeline' }),
  };
  await load(page);
  fill(main, page.head, page.notice, page.why, page.actions, page.diagram, page.timeline);
  draw(page);
  let stopped = false;
  let timer = null;
  const poll = async () => {
    if (stopped) return;
    if (!TERMINAL.includes(page.saga.status) && document.visibilityState === 'visible') {
      try {
        const { data, etag } = await api(`/v1/sagas/${id}`);
        if (etag !== page.etag) {
          page.saga = data;
          page.etag = etag;
          await loadEvents(page);
          draw(page);
        }
      } catch { /* try again at the next tick */ }
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  };
  timer = setTimeout(poll, POLL_MS);
  return () => { stopped = true; clearTimeout(timer); };
}

async function load(page) {
  const { data, etag } = await api(`/v1/sagas/${page.id}`);
  page.saga = data;
  page.etag = etag;
  await loadEvents(page);
}

async function loadEvents(page) {
  const [{ data }, types] = await Promise.all([
    api(url(`/v1/sagas/${page.id}/events`, { with_state: true, with_messages: true })),
    sagaTypes().catch(() => []),
  ]);
  page.events = data;
  // The version it runs under now: its start's, unless it was migrated since.
  const started = data.find((e) => e.type === 'SagaStarted');
  const migrated = data.filter((e) => e.type === 'SagaMigrated').pop();
  const def = (migrated && migrated.data.to) || (page.saga.progress && page.saga.progress.definition)
    || (started && started.data.definition) || {};
  const type = types.find((t) => t.saga_type === page.saga.saga_type);
  page.version = def.version;
  page.definition = type && (type.versions.find((v) => v.version === def.version) || type.versions[type.versions.length - 1]);
}

function draw(page) {
  drawHead(page);
  drawWhy(page);
  if (!page.panel) drawActions(page);
  drawDiagram(page, currentProgress(page));
  drawTimeline(page);
}

function currentProgress(page) {
  if (page.selected !== null) {
    const e = page.events.find((x) => x.seq === page.selected);
    if (e && e.state) return { state: e.state, at: e };
  }
  const last = [...page.events].reverse().find((e) => e.state);
  return { state: last ? last.state : null, at: null };
}

function drawHead(page) {
  const s = page.saga;
  const row = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
  fill(page.head,
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '« Overview')),
    h('h1', {}, `${s.saga_type} ${s.business_key} `, status(s.status)),
    h('dl', { class: 'facts' },
      row('id', h('code', {}, s.id)),
      row('type', `${s.saga_type}, definition version ${page.version ?? '?'}`),
      row('business key', s.business_key),
      row('version (ETag)', String(s.version)),
      row('created', time(s.created_at)),
      row('updated', time(s.updated_at)),
      row('trace id', s.trace_id ? h('code', {}, s.trace_id) : '—')));
}

/** The API's explanation, in words. */
function drawWhy(page) {
  const s = page.saga;
  const w = s.waiting_for;
  let text;
  if (TERMINAL.includes(s.status)) text = [`It is ${s.status}: it waits for nothing.`];
  else if (!w) text = [`It is ${s.status}.`];
  else {
    const on = {
      reply: ['waiting for the reply, which times out ', time(w.fires_at), ` (${span(w.fires_at)})`],
      retry: ['waiting to retry: the next attempt is sent ', time(w.fires_at), ` (${span(w.fires_at)})`],
      operator: ['waiting for an operator: out of attempts, only an action moves it on'],
    }[w.waiting_on] || [w.waiting_on];
    text = [
      h('strong', {}, w.participant), ' must answer ', h('code', {}, w.step),
      ` (attempt ${w.attempt} of ${w.max_attempts}), since `, time(w.since), ` (${span(w.since)}); `, ...on, '.',
      w.command_id ? h('span', { class: 'muted' }, ' Command ', h('code', {}, w.command_id), w.command_sent_at ? [' sent ', time(w.command_sent_at)] : ' not sent yet', '.') : null,
    ];
  }
  fill(page.why,
    h('h2', {}, 'Why it waits'),
    h('p', {}, text),
    s.last_error ? h('p', { class: 'error' }, 'Last error: ', s.last_error) : null,
    s.next_wake_at ? h('p', {}, 'Next timer: ', time(s.next_wake_at)) : null);
}

function drawActions(page) {
  const allowed = page.saga.allowed_actions || [];
  if (!page.session.can('operator')) return fill(page.actions);
  if (!allowed.length) return fill(page.actions, h('h2', {}, 'Actions'), h('p', { class: 'muted' }, 'No action is allowed now.'));
  fill(page.actions,
    h('h2', {}, 'Actions'),
    h('div', { class: 'buttons' }, allowed.map((a) => h('button', { type: 'button', 'data-action': a, onclick: () => openPanel(page, a) }, a))));
}

/** The form of one action: reason → preview (dry run) → confirm. The ETag
 * read when the panel opened goes with both, so a saga that moved on in
 * between is refused (412) rather than acted on blind. */
function openPanel(page, action) {
  const etag = page.etag;
  page.panel = action;
  const reason = h('textarea', { id: 'reason', required: true, rows: 2, placeholder: 'why (recorded in the saga\'s history)' });
  const assume = action === 'skip' ? h('select', { id: 'assume' }, h('option', { value: 'succeeded' }, 'succeeded'), h('option', { value: 'failed' }, 'failed')) : null;
  const toVersion = action === 'migrate' ? h('input', { id: 'to-version', type: 'number', min: 1, required: true }) : null;
  const out = h('div', { class: 'preview', 'aria-live': 'polite' });
  const body = () => {
    const b = { reason: reason.value.trim() };
    if (assume) b.assume = assume.value;
    if (toVersion) b.to_version = Number(toVersion.value);
    return b;
  };
  const close = () => { page.panel = null; drawActions(page); };
  const failed = async (e) => {
    if (e instanceof ApiError && e.status === 412) {
      page.panel = null;
      await load(page);
      draw(page);
      fill(page.notice, h('div', { class: 'problem stale', role: 'alert' },
        h('strong', {}, 'Someone acted first. '),
        `The saga moved on after this page read it (${e.problem.detail || 'its version changed'}). Nothing was done. Here is the saga now: check it, then act again if it still needs it.`));
      page.notice.focus();
    } else {
      fill(out, problem(e));
    }
  };
  const form = h('form', { class: 'act', onsubmit: async (ev) => {
    ev.preventDefault();
    fill(out, h('p', { class: 'muted' }, 'Asking for a dry run…'));
    try {
      const { data } = await api(url(`/v1/sagas/${page.id}/actions/${action}`, { dry_run: true }), { method: 'POST', body: body(), ifMatch: etag });
      const confirm = h('button', { type: 'button', class: 'danger', id: 'confirm', onclick: async () => {
        confirm.disabled = true;
        try {
          const done = await api(`/v1/sagas/${page.id}/actions/${action}`, { method: 'POST', body: body(), ifMatch: etag });
          page.panel = null;
          fill(page.notice, h('p', { class: 'ok', role: 'status' }, `${action} done: the saga is ${done.data.status} at version ${done.data.version}.`));
          await load(page);
          draw(page);
        } catch (e) {
          await failed(e);
        }
      } }, `Confirm ${action}`);
      fill(out, h('h3', {}, `Dry run of ${action}: nothing has changed yet`), plan(data),
        h('div', { class: 'buttons' }, confirm, h('button', { type: 'button', onclick: close }, 'Cancel')));
      confirm.focus();
    } catch (e) {
      await failed(e);
    }
  } },
  h('h3', {}, action),
  h('label', { for: 'reason' }, 'Reason'), reason,
  assume ? [h('label', { for: 'assume' }, 'Assume the step'), assume] : null,
  toVersion ? [h('label', { for: 'to-version' }, 'To version'), toVersion] : null,
  h('div', { class: 'buttons' }, h('button', { type: 'submit' }, 'Preview'), h('button', { type: 'button', onclick: close }, 'Cancel')));
  fill(page.notice);
  fill(page.actions, h('h2', {}, 'Actions'), form, out);
  reason.focus();
}

/** The definition's steps, forward on top and their undos below, with what
 * is done, in hand, and the compensation path marked. */
function drawDiagram(page, { state, at }) {
  const d = page.definition;
  if (!d) return fill(page.diagram, h('h2', {}, 'Steps'), h('p', { class: 'muted' }, 'The definition is not loaded on this node.'));
  const p = (state && state.progress) || {};
  const done = new Set(p.steps_done || []);
  const skipped = new Set(p.steps_skipped || []);
  const undone = new Set(p.compensations_done || []);
  const left = new Set(p.compensations_left || []);
  const inHand = new Set(p.in_hand && p.in_hand.length ? p.in_hand : state && state.current_step ? [state.current_step] : []);
  const st = state ? state.status : page.saga.status;
  const mark = (name, base) => {
    const cls = [base];
    if (inHand.has(name)) cls.push('current');
    if (done.has(name) || undone.has(name)) cls.push('done');
    if (skipped.has(name)) cls.push('skipped');
    if (left.has(name)) cls.push('planned');
    return cls.join(' ');
  };
  const box = (c, base, extra) => h('li', { class: mark(c.name, base), 'aria-current': inHand.has(c.name) ? 'step' : null },
    h('span', { class: 'name' }, c.name), h('span', { class: 'who' }, c.participant), extra);
  const forward = d.steps.map((s) => box(s, 'step', s.pivot ? h('span', { class: 'tag' }, 'pivot') : null));
  const undos = d.steps.map((s) => (s.undo ? box(s.undo, 'step undo') : h('li', { class: 'step none' }, h('span', { class: 'muted' }, 'no undo'))));
  fill(page.diagram,
    h('h2', {}, 'Steps', at ? h('span', { class: 'muted' }, ` as after event ${at.seq} (${at.type})`) : null),
    h('p', { class: 'legend' }, h('span', { class: 'step done' }, 'done'), h('span', { class: 'step current' }, 'in hand'),
      h('span', { class: 'step planned' }, 'compensation to run'), h('span', { class: 'step skipped' }, 'skipped'),
      ` status ${st}`, p.past_pivot ? ', past its pivot' : ''),
    h('div', { class: 'scroll' },
      h('ol', { class: 'row forward', 'aria-label': 'forward steps' }, forward, h('li', { class: `end ${st === 'completed' ? 'reached' : ''}` }, 'completed')),
      h('ol', { class: 'row backward', 'aria-label': 'compensation' }, undos,
        d.final_compensation ? box(d.final_compensation, 'step undo final') : null,
        h('li', { class: `end ${st === 'compensated' ? 'reached' : ''}` }, 'compensated'))),
    left.size || undone.size ? h('p', {}, 'Compensation path: ',
      [...undone].map((n) => h('span', { class: 'pill done' }, n)), [...left].map((n) => h('span', { class: 'pill planned' }, n))) : null);
}

function summaryOf(e) {
  const d = e.data || {};
  const bits = [];
  if (d.step) bits.push(d.step);
  if (d.attempt) bits.push(`#${d.attempt}`);
  if (d.cause) bits.push(d.cause);
  if (d.then && d.then.kind) bits.push(`then ${d.then.kind}`);
  if (d.reason) bits.push(`“${d.reason}”`);
  if (d.operator) bits.push(`by ${d.operator}`);
  return bits.join(' · ');
}

function drawTimeline(page) {
  const open = new Set([...page.timeline.querySelectorAll('details[open]')].map((d) => Number(d.dataset.seq)));
  const items = page.events.map((e) => {
    const st = e.state;
    const commands = e.commands || [];
    return h('li', { class: page.selected === e.seq ? 'selected' : '' },
      h('details', { 'data-seq': e.seq, open: open.has(e.seq) },
        h('summary', {}, h('span', { class: 'seq' }, `#${e.seq}`), ' ', h('strong', {}, e.type), ' ', time(e.recorded_at),
          st ? [' → ', status(st.status)] : null, ' ', h('span', { class: 'muted' }, summaryOf(e)),
          commands.length ? h('span', { class: 'tag' }, `${commands.length} command${commands.length > 1 ? 's' : ''}`) : null),
        h('div', { class: 'event' },
          e.caused_by ? h('p', {}, 'Caused by reply ', h('code', {}, e.caused_by.message_id), ', received ', time(e.caused_by.received_at), '.') : null,
          commands.length ? h('div', { class: 'scroll' }, h('table', { class: 'commands' },
            h('caption', {}, 'Commands sent'),
            h('thead', {}, h('tr', {}, ['step', 'to', 'command', 'transport', 'published', 'publish attempts', 'id'].map((c) => h('th', { scope: 'col' }, c)))),
            h('tbody', {}, commands.map((c) => h('tr', {},
              h('td', {}, `${c.step} #${c.attempt}`), h('td', {}, c.participant), h('td', {}, h('code', {}, c.command_type)), h('td', {}, c.transport),
              h('td', {}, c.dead_lettered ? h('span', { class: 'error' }, 'dead-lettered') : time(c.sent_at)),
              h('td', { class: 'num' }, String(c.publish_attempts), c.last_error ? h('span', { class: 'error' }, ` ${c.last_error}`) : null),
              h('td', {}, h('code', {}, c.message_id))))))) : null,
          st ? h('div', {}, h('h4', {}, 'State after this event'),
            h('p', {}, status(st.status), st.current_step ? ` step ${st.current_step}${st.attempt ? ` #${st.attempt}` : ''}` : '',
              st.allowed_actions.length ? `; actions: ${st.allowed_actions.join(', ')}` : '; no action allowed'),
            st.last_error ? h('p', { class: 'error' }, st.last_error) : null,
            h('button', { type: 'button', class: 'link', onclick: () => { page.selected = page.selected === e.seq ? null : e.seq; drawDiagram(page, currentProgress(page)); drawTimeline(page); } },
              page.selected === e.seq ? 'Show the diagram as it is now' : 'Show the diagram at this point')) : null,
          h('h4', {}, 'Event data'), json(e.data))));
  });
  const n = page.events.length;
  fill(page.timeline, h('h2', {}, `Timeline (${n} ${n === 1 ? 'event' : 'events'})`), h('ol', { class: 'events' }, items));
}
