// The sidyp console, part 1 of 3: DOM building, the API client, routing, sign-in, datasets and models.
// jobs.js (jobs, a job's page, its report) and review.js (the review table) load after this file.
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

// ---------------------------------------------------------------- datasets
// A small RFC 4180 reader for the preview (the server's parser is the one that decides).
function parseCsv(text) {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i += 1) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i += 1; }
      else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(cell); cell = ''; }
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i += 1;
      row.push(cell);
      rows.push(row);
      row = [];
      cell = '';
    } else cell += c;
  }
  if (cell !== '' || row.length) { row.push(cell); rows.push(row); }
  const data = rows.filter((r) => !(r.length === 1 && r[0] === ''));
  return { columns: data[0] || [], rows: data.slice(1) };
}

function parseJsonl(text) {
  const objects = text.split(/\r?\n/).filter((l) => l.trim()).map((line) => {
    try { return JSON.parse(line); } catch (_) { return { '(unreadable line)': line }; }
  });
  const columns = [...new Set(objects.flatMap((o) => (o && typeof o === 'object' ? Object.keys(o) : [])))];
  const cell = (v) => (v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v));
  return { columns, rows: objects.map((o) => columns.map((c) => cell(o && o[c]))) };
}

async function readPreview(file) {
  if (file.size > 20 * 1024 * 1024) return { columns: [], rows: [], tooBig: true };
  const text = (await file.text()).replace(/^\ufeff/, '');
  const jsonl = /\.(jsonl|ndjson|json)$/i.test(file.name) || text.trimStart().startsWith('{');
  return jsonl ? parseJsonl(text) : parseCsv(text);
}

function rowsTable(columns, entries, messages) {
  // entries: [rowNumber, cells]; messages: Map rowNumber -> [message]
  const head = h('tr', {}, h('th', {}, 'row'), columns.map((c) => h('th', {}, c)), messages ? h('th', {}, 'problem') : null);
  const body = entries.map(([n, cells]) => {
    const problems = messages && messages.get(n);
    return h(
      'tr',
      { class: problems ? 'bad' : null, 'data-row': n },
      h('td', { class: 'num' }, n),
      columns.map((_, i) => h('td', {}, clip(cells[i] === undefined ? '' : cells[i], 120))),
      messages ? h('td', { class: 'why' }, (problems || []).join('; ')) : null,
    );
  });
  return h('div', { class: 'scroll' }, h('table', { class: 'grid' }, h('thead', {}, head), h('tbody', {}, body)));
}

function uploadErrors(err, preview) {
  const errors = (err.problem && err.problem.errors) || [];
  const byRow = new Map();
  const general = [];
  for (const e of errors) {
    const text = e.column ? `${e.column}: ${e.message}` : e.message;
    if (e.row === null || e.row === undefined) general.push(text);
    else byRow.set(e.row, [...(byRow.get(e.row) || []), text]);
  }
  const entries = [...byRow.keys()].sort((a, b) => a - b).map((n) => [n, (preview && preview.rows[n]) || []]);
  return h(
    'div',
    { class: 'upload-errors', id: 'upload-errors' },
    h('h3', {}, `The upload was refused: ${err.problem.detail || err.message}`),
    general.length ? h('ul', {}, general.map((g) => h('li', {}, g))) : null,
    entries.length ? rowsTable((preview && preview.columns) || [], entries, byRow) : null,
  );
}

// The preview's rows that the server refused get the same mark as in the list of problems.
function markPreview(previewBox, err) {
  for (const e of (err.problem && err.problem.errors) || []) {
    const row = e.row === null || e.row === undefined ? null : previewBox.querySelector(`tr[data-row="${Number(e.row)}"]`);
    if (row) row.classList.add('bad');
  }
}

async function pageDatasets(ctx) {
  const main = $('#main');
  const state = { file: null, preview: null };
  const picker = h('input', { type: 'file', id: 'file', accept: '.csv,.jsonl,.ndjson,.json,.txt', hidden: true });
  const fileInfo = h('span', { class: 'muted' }, 'No file chosen.');
  const name = h('input', { id: 'ds-name', maxLength: 200, placeholder: 'defaults to the file name' });
  const textColumn = h('input', { id: 'ds-text', value: 'text', maxLength: 200 });
  const labelColumn = h('input', { id: 'ds-label', value: 'noisy_label', maxLength: 200 });
  const uploadButton = h('button', { type: 'submit', id: 'upload', disabled: true }, 'Upload');
  const previewBox = h('div', { id: 'preview' });
  const outcome = h('div', { id: 'upload-outcome' });

  async function choose(file) {
    if (!file) return;
    state.file = file;
    state.preview = await readPreview(file);
    fileInfo.textContent = `${file.name} — ${(file.size / 1024).toFixed(1)} KB`;
    uploadButton.disabled = false;
    fill(outcome);
    const p = state.preview;
    fill(previewBox, 
      p.tooBig
        ? h('p', { class: 'muted' }, 'Too large to preview here; the server checks it on upload.')
        : h('div', {}, h('h3', {}, `Preview: ${Math.min(8, p.rows.length)} of ${p.rows.length} rows`), rowsTable(p.columns, p.rows.slice(0, 8).map((r, i) => [i, r]))),
    );
  }

  const drop = h(
    'div',
    {
      class: 'drop',
      id: 'drop',
      tabIndex: 0,
      ondragover: (e) => { e.preventDefault(); drop.classList.add('over'); },
      ondragleave: () => drop.classList.remove('over'),
      ondrop: (e) => { e.preventDefault(); drop.classList.remove('over'); guarded(choose)(e.dataTransfer.files[0]); },
      onkeydown: (e) => { if (e.key === 'Enter' || e.key === ' ') picker.click(); },
    },
    h('strong', {}, 'Drop a CSV or JSON Lines file here'),
    ' or ',
    h('button', { type: 'button', class: 'ghost', onclick: () => picker.click() }, 'choose a file'),
    h('div', {}, fileInfo),
  );
  picker.addEventListener('change', () => guarded(choose)(picker.files[0]));

  const upload = guarded(async () => {
    if (!state.file) return;
    const form = new FormData();
    form.append('file', state.file, state.file.name);
    if (name.value.trim()) form.append('name', name.value.trim());
    form.append('text_column', textColumn.value.trim() || 'text');
    form.append('label_column', labelColumn.value.trim() || 'noisy_label');
    uploadButton.disabled = true;
    try {
      const ds = await api('/v1/datasets', { method: 'POST', form });
      fill(previewBox);
      state.file = null;
      fileInfo.textContent = 'No file chosen.';
      picker.value = '';
      name.value = '';
      await refresh();
      fill(outcome, h('p', { class: 'ok' }, `Uploaded “${ds.name || ds.id}”: ${ds.n_rows} rows, classes ${ds.labels.join(', ')}.`));
    } catch (err) {
      if (!(err instanceof ApiError) || err.status === 401) throw err;
      fill(outcome, uploadErrors(err, state.preview));
      markPreview(previewBox, err);
      uploadButton.disabled = false;
    }
  });

  const form = h(
    'form',
    { class: 'upload', onsubmit: (e) => { e.preventDefault(); upload(); } },
    drop,
    picker,
    h('div', { class: 'fields' },
      h('label', {}, 'Name', name),
      h('label', {}, 'Text column', textColumn),
      h('label', {}, 'Label column', labelColumn)),
    uploadButton,
  );
  const list = h('div', { id: 'datasets' }, h('p', { class: 'muted' }, 'Loading…'));
  main.append(h('h1', {}, 'Datasets'), card('Upload a dataset', form, previewBox, outcome), card('Your datasets', list));

  async function refresh() {
    const page = await api('/v1/datasets?limit=100');
    if (!ctx.alive) return;
    if (!page.data.length) {
      fill(list, h('p', { class: 'muted', id: 'no-datasets' }, 'No datasets yet: upload one above.'));
      return;
    }
    const rows = page.data.map((d) => h(
      'tr',
      { 'data-id': d.id },
      h('td', {}, h('strong', {}, d.name || '(unnamed)'), h('div', { class: 'muted mono' }, d.id)),
      h('td', { class: 'num' }, d.n_rows),
      h('td', {}, Object.entries(d.label_counts).map(([c, n]) => h('span', { class: 'chip' }, `${c} ${n}`))),
      h('td', {}, d.has_gold ? 'yes' : 'no'),
      h('td', {}, when(d.created_at)),
      h('td', {}, h('a', { class: 'button', href: `#/jobs?dataset=${encodeURIComponent(d.id)}` }, 'Start a job')),
    ));
    fill(list, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ['Name', 'Rows', 'Classes (given labels)', 'Gold', 'Created', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, rows)));
  }
  await refresh();
}

// ---------------------------------------------------------------- models
async function pageModels(ctx) {
  const main = $('#main');
  main.append(h('h1', {}, 'Models'));
  const page = await api('/v1/models?limit=100');
  if (!ctx.alive) return;
  if (!page.data.length) {
    main.append(card(null, h('p', { class: 'muted' }, 'No models yet: a job that succeeds makes one.')));
    return;
  }
  main.append(card(null, h('table', { class: 'grid' },
    h('thead', {}, h('tr', {}, ['Model', 'From job', 'Classes', 'Created'].map((t) => h('th', {}, t)))),
    h('tbody', {}, page.data.map((m) => h('tr', {},
      h('td', {}, h('a', { href: `#/models/${encodeURIComponent(m.id)}`, class: 'mono' }, m.id)),
      h('td', {}, h('a', { href: `#/jobs/${encodeURIComponent(m.job_id)}`, class: 'mono' }, m.job_id)),
      h('td', {}, m.labels.join(', ')),
      h('td', {}, when(m.created_at))))))));
}

function probabilityBars(probabilities) {
  const sorted = Object.entries(probabilities).sort((a, b) => b[1] - a[1]);
  return h('div', { class: 'probs' }, sorted.map(([cls, p]) => h(
    'div',
    { class: 'prob' },
    h('span', { class: 'cls' }, cls),
    bar(p, pct(p)),
    h('span', { class: 'num' }, pct(p)),
  )));
}

async function pageModel(ctx, modelId) {
  const main = $('#main');
  const model = await api(`/v1/models/${encodeURIComponent(modelId)}`);
  if (!ctx.alive) return;
  const texts = h('textarea', { id: 'predict-texts', rows: 5, placeholder: 'One text per line' });
  const results = h('div', { id: 'predictions' });
  const predict = guarded(async () => {
    const lines = texts.value.split('\n').map((t) => t.trim()).filter(Boolean);
    if (!lines.length) return;
    const out = await api(`/v1/models/${encodeURIComponent(modelId)}/predict`, { method: 'POST', json: { texts: lines } });
    if (!ctx.alive) return;
    fill(results, ...out.predictions.map((p, i) => h(
      'div',
      { class: 'prediction' },
      h('p', { class: 'ptext' }, lines[i]),
      h('p', {}, h('span', { class: 'chip strong' }, p.label), ` ${pct(p.confidence)} confident`),
      probabilityBars(p.probabilities),
    )));
  });
  main.append(
    h('h1', {}, 'Model ', h('span', { class: 'mono' }, model.id)),
    card(null, h('p', {}, 'Trained by job ', h('a', { href: `#/jobs/${encodeURIComponent(model.job_id)}`, class: 'mono' }, model.job_id),
      ` on ${when(model.created_at)}. Classes: ${model.labels.join(', ')}.`)),
    card('Try it', h('form', { onsubmit: (e) => { e.preventDefault(); predict(); } }, texts,
      h('button', { type: 'submit', id: 'predict' }, 'Predict')), results),
  );
}

// ---------------------------------------------------------------- start
window.addEventListener('hashchange', render);
document.addEventListener('DOMContentLoaded', () => {
  $('#signout').addEventListener('click', () => signOut());
  render();
});
