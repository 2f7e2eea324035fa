// Small DOM helpers. Text always goes in as text nodes (never as HTML), so
// nothing a saga carries can become markup.

/** `h('a', {href: '#/'}, 'text', child)`: an element. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const local = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit',
});

/** A time in the viewer's zone, UTC on hover. */
export function time(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  const d = new Date(iso);
  return h('time', { datetime: iso, title: `${d.toISOString()} (UTC)` }, local.format(d));
}

/** `3 m 20 s` between two instants (or from `iso` until now). */
export function span(fromIso, toIso) {
  if (!fromIso) return '—';
  const ms = (toIso ? new Date(toIso) : new Date()) - new Date(fromIso);
  const s = Math.round(Math.abs(ms) / 1000);
  const parts = [];
  const d = Math.floor(s / 86400), hh = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), ss = s % 60;
  if (d) parts.push(`${d} d`);
  if (hh) parts.push(`${hh} h`);
  if (m && !d) parts.push(`${m} min`);
  if (!d && !hh) parts.push(`${ss} s`);
  return (ms < 0 ? 'in ' : '') + parts.join(' ');
}

export function status(s) {
  return h('span', { class: `status status-${s}` }, s);
}

export function json(value) {
  return h('pre', { class: 'json' }, JSON.stringify(value, null, 2));
}

export function problem(e) {
  const p = e.problem || {};
  const errors = Array.isArray(p.errors) ? p.errors.map((x) => `${x.field}: ${x.message}`) : [];
  return h('div', { class: 'problem', role: 'alert' },
    h('strong', {}, `${e.status || ''} ${p.title || 'Error'}`), ' ', p.detail || e.message,
    errors.length ? h('ul', {}, errors.map((x) => h('li', {}, x))) : null);
}

export function shortId(id) {
  return id.length > 13 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

/** The rows of a hex dump: offset, 16 bytes in hex, and as ASCII. */
export function hexdump(bytes) {
  const lines = [];
  for (let i = 0; i < bytes.length; i += 16) {
    const row = bytes.slice(i, i + 16);
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ');
    const ascii = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    lines.push(`${i.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join('\n');
}

/** Runs `work` over `items`, at most `n` at once. */
export async function limited(items, n, work) {
  let next = 0;
  const workers = Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await work(items[i], i);
    }
  });
  await Promise.all(workers);
}
