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
// Renders overlap: a hash change while a view still awaits the API starts
// another. Each render draws into its own detached container and only the
// newest one is swapped into the page, so a slow answer for a route already
// left never overwrites the route the operator is on.
let generation = 0;

function route() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query = ''] = raw.split('?');
  return { raw, path, params: new URLSearchParams(query) };
}

async function render() {
  const mine = ++generation;
  if (cleanup) cleanup();
  cleanup = null;
  const { raw, path, params } = route();
  renderNav(path);
  const view = h('div', { class: 'view' });
  let done = null;
  let m;
  try {
    if ((m = path.match(/^\/sagas\/([0-9a-fA-F-]{36})$/))) done = await sagaPage(view, m[1], session);
    else if ((m = path.match(/^\/dead-letters\/(\d+)$/))) done = await deadLetter(view, m[1], session);
    else if (path === '/dead-letters') done = await deadLetters(view, params, session);
    else done = await overview(view, params, session);
  } catch (e) {
    if (mine !== generation) return;
    if (e instanceof ApiError && e.status === 401) return signIn('The token was refused; sign in again.');
    fill(view, problem(e));
  }
  if (mine !== generation) {
    if (done) done();
    return;
  }
  cleanup = done;
  fill(main, view);
  // Which route the page shows, for anyone (a test) waiting on a navigation.
  main.dataset.route = raw;
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
  generation++;
  if (cleanup) cleanup();
  cleanup = null;
  delete main.dataset.route;
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

// The skip link moves the focus to the content; followed as a link, it would
// change the hash, which is the route.
document.querySelector('a.skip').addEventListener('click', (ev) => {
  ev.preventDefault();
  main.focus();
});

(async () => {
  try {
    await start();
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) signIn(token.get() ? 'The token was refused.' : null);
    else if (e instanceof ApiError && e.status === 403) signIn(e.problem.detail);
    else fill(main, problem(e));
  }
})();
