// Dead letters (admins): the open ones (or all), one with its raw bytes as
// text and hex, and redrive or discard with a reason.

import { api, url } from './api.js';
import { h, fill, time, json, problem, hexdump } from './ui.js';

export async function deadLetters(main, params) {
  const all = params.get('all') === '1';
  const after = params.get('after');
  const { data } = await api(url('/v1/dead-letters', { open_only: all ? 'false' : null, after, limit: 50 }));
  const q = (p) => `#/dead-letters?${new URLSearchParams(p)}`;
  fill(main,
    h('h1', {}, 'Dead letters'),
    h('p', {}, all ? [h('a', { href: q({}) }, 'Open only'), ' · all'] : ['Open only · ', h('a', { href: q({ all: '1' }) }, 'all, resolved too')]),
    h('div', { class: 'scroll' }, h('table', { class: 'dead-letters' },
      h('thead', {}, h('tr', {}, ['id', 'kind', 'channel', 'reason', 'received', 'resolution'].map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, data.items.length ? data.items.map((d) => h('tr', {},
        h('td', {}, h('a', { href: `#/dead-letters/${d.id}` }, `#${d.id}`)),
        h('td', {}, d.kind), h('td', {}, d.channel), h('td', { class: 'error' }, d.reason),
        h('td', {}, time(d.received_at)), h('td', {}, d.resolution || 'open')))
        : h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'None.'))))),
    h('nav', { class: 'pager', 'aria-label': 'Pages' },
      after ? h('a', { href: q(all ? { all: '1' } : {}) }, '« First page') : null,
      data.next_after ? h('a', { href: q({ ...(all ? { all: '1' } : {}), after: data.next_after }), rel: 'next' }, 'Next page »') : h('span', { class: 'muted' }, 'Last page')));
  return null;
}

function bytesOf(base64) {
  const bin = atob(base64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

export async function deadLetter(main, id, session, notice = null) {
  const { data: d } = await api(`/v1/dead-letters/${id}`);
  const bytes = bytesOf(d.raw_base64);
  const row = (k, v) => [h('dt', {}, k), h('dd', {}, v)];
  const out = h('div', { 'aria-live': 'polite' }, notice);
  const act = (verb) => {
    const reason = h('textarea', { id: 'dl-reason', required: true, rows: 2, placeholder: 'why (recorded with the dead letter)' });
    const form = h('form', { class: 'act', onsubmit: async (ev) => {
      ev.preventDefault();
      try {
        const { data } = await api(`/v1/dead-letters/${id}/${verb}`, { method: 'POST', body: { reason: reason.value.trim() } });
        // Shown again with the dead letter as it is now (resolved).
        const done = h('p', { class: 'ok', role: 'status' }, verb === 'redrive' ? `Redriven: ${data.outcome}.` : 'Discarded.');
        await deadLetter(main, id, session, done).catch((e) => fill(out, done, problem(e)));
      } catch (e) {
        fill(out, problem(e));
      }
    } },
    h('h3', {}, verb === 'redrive' ? 'Redrive: apply it once more' : 'Discard: close it without applying it'),
    h('label', { for: 'dl-reason' }, 'Reason'), reason,
    h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'danger' }, `Confirm ${verb}`), h('button', { type: 'button', onclick: () => fill(out) }, 'Cancel')));
    fill(out, form);
    reason.focus();
  };
  fill(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/dead-letters' }, '« Dead letters')),
    h('h1', {}, `Dead letter #${d.id}`),
    h('dl', { class: 'facts' },
      row('kind', d.kind), row('channel', d.channel), row('reason', h('span', { class: 'error' }, d.reason)),
      row('received', time(d.received_at)), row('size', `${bytes.length.toLocaleString()} bytes`),
      d.outbox_message_id ? row('command', h('code', {}, d.outbox_message_id)) : null,
      row('resolution', d.resolution ? [d.resolution, ' by ', d.resolved_by || '?', ' ', time(d.resolved_at), d.resolved_note ? ` — “${d.resolved_note}”` : ''] : 'open')),
    !d.resolution && session.can('admin') ? h('div', { class: 'buttons' },
      h('button', { type: 'button', onclick: () => act('redrive') }, 'Redrive'),
      h('button', { type: 'button', onclick: () => act('discard') }, 'Discard')) : null,
    out,
    h('h2', {}, 'As text'), d.raw_text !== null && d.raw_text !== undefined ? h('pre', { class: 'raw' }, d.raw_text) : h('p', { class: 'muted' }, 'Not UTF-8: see the bytes below.'),
    h('h2', {}, 'Bytes (hex)'), h('pre', { class: 'raw hex' }, hexdump(bytes)),
    h('h2', {}, 'Headers'), json(d.headers));
  return null;
}
