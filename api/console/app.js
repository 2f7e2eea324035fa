// The console's shell: sign-in, navigation and hash routing. Every view is a
// function of the URL (`#/?status=suspended`, `#/sagas/<id>`,
// `#/dead-letters`), so a link to any of them can be shared.

import { api, ApiError, token } from './api.js';
import { h, fill, problem } from './ui.js';
import { overview } from './overview.js';
import { sagaPage } from './saga.js';
import { deadLetters, deadLetter } from './dead_letters.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');

/** The caller (`GET /v1/me`) and what its roles allow. */
export const session = {
  me: null,
  can(role) {
    const roles = this.me ? this.me.roles : [];
    const rank = { viewer: 1, operator: 2, admin: 3 };
    return roles.some((r) => (rank[r] || 0) >= rank[role]);
  },
};

let cleanup = null;

function route() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  return { path, params: new URLSearchParams(query) };
}

async function render() {
  if (cleanup) cleanup();
  cleanup = null;
  const { path, params } = route();
  renderNav(path);
  let m;
  try {
    if ((m = path.match(/^\/sagas\/([0-9a-fA-F-]{36})$/))) cleanup = await sagaPage(main, m[1], session);
    else if ((m = path.match(/^\/dead-letters\/(\d+)$/))) cleanup = await deadLetter(main, m[1], session);
    else if (path === '/dead-letters') cleanup = await deadLetters(main, params, session);
    else cleanup = await overview(main, params, session);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return signIn('The token was refused; sign in again.');
    fill(main, problem(e));
  }
}

function renderNav(path) {
  const link = (href, label, current) =>
    h('a', { href, 'aria-current': current ? 'page' : null }, label);
  fill(nav,
    link('#/', 'Overview', path === '/' || path.startsWith('/sagas')),
    session.can('admin') ? link('#/dead-letters', 'Dead letters', path.startsWith('/dead-letters')) : null);
  const me = session.me;
  fill(who, me && me.access_control
    ? [h('span', {}, `${me.name} (${me.roles.join(', ')})`), ' ',
      h('button', { type: 'button', class: 'link', onclick: signOut }, 'Sign out')]
    : me ? h('span', { class: 'muted', title: 'No tokens are configured: the API is open' }, 'open access') : null);
}

function signOut() {
  token.clear();
  session.me = null;
  signIn('Signed out.');
}

function signIn(message) {
  fill(nav);
  fill(who);
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', required: true, spellcheck: 'false' });
  const error = h('div', { 'aria-live': 'polite' }, message ? h('p', { class: 'muted' }, message) : null);
  const form = h('form', { class: 'signin', onsubmit: async (ev) => {
    ev.preventDefault();
    token.set(input.value.trim());
    try {
      await start();
    } catch (e) {
      token.clear();
      fill(error, problem(e));
    }
  } },
  h('h1', {}, 'Sign in'),
  h('p', {}, 'This sagaplane requires an access token. It is kept only for this browser tab (session storage) and sent only in the Authorization header.'),
  h('label', { for: 'token' }, 'Token'), input,
  h('button', { type: 'submit' }, 'Sign in'),
  error);
  fill(main, form);
  input.focus();
}

async function start() {
  const { data } = await api('/v1/me');
  session.me = data;
  if (!session.can('viewer')) {
    token.clear();
    throw new ApiError(403, { title: 'Forbidden', detail: `token "${data.name}" holds only ${data.roles.join(', ')}: the console needs viewer, operator or admin` });
  }
  await render();
}

window.addEventListener('hashchange', () => { if (session.me) render(); });

(async () => {
  try {
    await start();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) signIn(token.get() ? 'The token was refused.' : null);
    else if (e instanceof ApiError && e.status === 403) signIn(e.problem.detail);
    else fill(main, problem(e));
  }
})();
