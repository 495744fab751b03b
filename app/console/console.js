// The sidyp console: DOM building, the API client, problems, routing and sign-in. The pages load after this
// file: datasets.js, jobs.js (jobs, a job's page and its report), review.js (the review table), models.js.
//
// Every piece of user data (texts, labels, names, messages from the API) enters the page as a text node or
// a property value: nothing is parsed as HTML. The API key lives in sessionStorage (this tab only) and
// leaves the page only as the Authorization header.
'use strict';

const KEY_SLOT = 'sidyp.api-key';
const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

// ---------------------------------------------------------------- DOM
function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name in el && typeof value !== 'string') el[name] = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// replaceChildren, but arrays are spread and null / false (an absent optional part) are left out.
function fill(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

const $ = (selector, root = document) => root.querySelector(selector);
const pct = (x, digits = 1) => (x === null || x === undefined ? '—' : `${(100 * x).toFixed(digits)}%`);
const num = (x, digits = 3) => (typeof x === 'number' ? x.toFixed(digits) : '—');
const when = (iso) => (iso ? new Date(iso).toLocaleString() : '—');
const clip = (text, n = 160) => (text.length > n ? `${text.slice(0, n)}…` : text);

function badge(status) {
  return h('span', { class: `badge st-${status}` }, status);
}

function bar(fraction, label) {
  const fill = h('span', { class: 'fill' });
  fill.style.width = `${Math.max(0, Math.min(1, fraction || 0)) * 100}%`;
  return h('span', { class: 'bar', title: label || pct(fraction, 0) }, fill);
}

function card(title, ...children) {
  return h('section', { class: 'card' }, title ? h('h2', {}, title) : null, ...children);
}

// ---------------------------------------------------------------- API
class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

function apiKey() {
  return sessionStorage.getItem(KEY_SLOT);
}

async function request(path, { method = 'GET', json, form } = {}) {
  const headers = { Authorization: `Bearer ${apiKey()}` };
  let body;
  if (form) body = form;
  else if (json !== undefined) {
    headers['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const response = await fetch(path, { method, headers, body, cache: 'no-store', credentials: 'omit' });
  if (response.ok) return response;
  let problem = { title: response.statusText };
  try {
    problem = await response.json();
  } catch (_) {
    // not JSON: keep the status text
  }
  if (response.status === 401) signOut(`Signed out: ${problem.detail || 'the key was not accepted'}`);
  throw new ApiError(response.status, problem);
}

async function api(path, options) {
  const response = await request(path, options);
  return response.status === 204 ? null : response.json();
}

async function blobUrl(path) {
  const url = URL.createObjectURL(await (await request(path)).blob());
  view.blobs.push(url);
  return url;
}

async function download(path, filename) {
  const url = await blobUrl(path);
  const link = h('a', { href: url, download: filename, hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
}

// ---------------------------------------------------------------- problems (RFC 9457) as the API words them
function problemLines(err) {
  const lines = [];
  for (const e of (err.problem && err.problem.errors) || []) {
    const where = [];
    if (e.row !== null && e.row !== undefined) where.push(`row ${e.row}`);
    if (e.column) where.push(`column ${e.column}`);
    if (e.field) where.push(e.field);
    lines.push(where.length ? `${where.join(', ')}: ${e.message}` : e.message);
  }
  return lines;
}

function showProblem(err) {
  const box = $('#problem');
  fill(box);
  if (!(err instanceof ApiError)) {
    box.append(h('strong', {}, 'Something went wrong. '), String(err.message || err));
  } else {
    const p = err.problem;
    box.append(h('strong', {}, `${p.title || 'Error'} (${err.status}). `), p.detail || '');
    const lines = problemLines(err);
    if (lines.length) box.append(h('ul', {}, lines.slice(0, 20).map((l) => h('li', {}, l))));
  }
  box.append(h('button', { type: 'button', class: 'ghost close', onclick: clearProblem }, 'Dismiss'));
  box.hidden = false;
}

function clearProblem() {
  $('#problem').hidden = true;
  fill($('#problem'));
}

// Runs an async action; an error goes to the banner instead of vanishing.
function guarded(action) {
  return async (...args) => {
    try {
      return await action(...args);
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) showProblem(err);
      return undefined;
    }
  };
}

// ---------------------------------------------------------------- routing and per-page lifetime
// A page's timers, key handler and blob URLs end when the user navigates away.
let view = { alive: false, timers: [], blobs: [], onKey: null };

function newView() {
  view.alive = false;
  view.timers.forEach(clearInterval);
  view.blobs.forEach((u) => URL.revokeObjectURL(u));
  view = { alive: true, timers: [], blobs: [], onKey: null };
  return view;
}

// Calls `fn` every `ms` while the page lives; a call still running when the next is due is not doubled.
function every(ms, fn) {
  const ctx = view;
  let busy = false;
  const id = setInterval(async () => {
    if (!ctx.alive || busy) return;
    busy = true;
    try {
      await fn();
    } finally {
      busy = false;
    }
  }, ms);
  ctx.timers.push(id);
  return () => clearInterval(id);
}

const ROUTES = [
  [/^\/datasets$/, (ctx) => pageDatasets(ctx)],
  [/^\/jobs$/, (ctx, q) => pageJobs(ctx, q)],
  [/^\/jobs\/([\w-]+)$/, (ctx, q, id) => pageJob(ctx, id)],
  [/^\/models$/, (ctx) => pageModels(ctx)],
  [/^\/models\/([\w-]+)$/, (ctx, q, id) => pageModel(ctx, id)],
];

function render() {
  const ctx = newView();
  clearProblem();
  const main = $('#main');
  fill(main);
  const signedIn = Boolean(apiKey());
  $('#nav').hidden = !signedIn;
  $('#signout').hidden = !signedIn;
  $('#who').textContent = signedIn ? 'signed in' : '';
  if (!signedIn) return pageSignIn(main);
  const [path, query] = (location.hash.slice(1) || '/datasets').split('?');
  for (const a of document.querySelectorAll('#nav a')) {
    a.classList.toggle('active', path.startsWith(`/${a.dataset.page}`));
  }
  for (const [pattern, page] of ROUTES) {
    const m = path.match(pattern);
    if (m) return guarded(page)(ctx, new URLSearchParams(query || ''), ...m.slice(1));
  }
  location.hash = '#/datasets';
  return undefined;
}

document.addEventListener('keydown', (event) => {
  if (view.onKey) view.onKey(event);
});

// ---------------------------------------------------------------- sign in
function signOut(message) {
  sessionStorage.removeItem(KEY_SLOT);
  render();
  if (message) showProblem(new Error(message));
}

function pageSignIn(main) {
  const input = h('input', { type: 'password', id: 'api-key', autocomplete: 'off', required: true });
  const form = h(
    'form',
    { class: 'signin', onsubmit: (e) => { e.preventDefault(); signIn(input.value.trim()); } },
    h('h1', {}, 'Sign in'),
    h('label', { for: 'api-key' }, 'API key'),
    input,
    h('button', { type: 'submit' }, 'Sign in'),
    h('p', { class: 'muted' }, 'The key stays in this browser tab and is sent only as the Authorization header.'),
  );
  main.append(card(null, form));
  input.focus();
}

async function signIn(key) {
  if (!key) return;
  sessionStorage.setItem(KEY_SLOT, key);
  try {
    await api('/v1/datasets?limit=1');
  } catch (err) {
    if (err instanceof ApiError && err.status !== 401) showProblem(err);
    return;
  }
  if (!location.hash || location.hash === '#/') location.hash = '#/datasets';
  render();
}

// ---------------------------------------------------------------- start
window.addEventListener('hashchange', render);
document.addEventListener('DOMContentLoaded', () => {
  $('#signout').addEventListener('click', () => signOut());
  render();
});
