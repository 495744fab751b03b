// The sidyp console: a finished job's review table. Pages come from the API one at a time
// (worst label quality first by default), so a job of any size is browsed without loading its rows; the
// keyboard moves through rows and saves a decision at once. Uses console.js.
'use strict';

const PAGE_SIZE = 50;
const KEYS_HELP = 'Keys: j / ↓ next row · k / ↑ previous · a accept the suggestion · g keep the given label · 1–9 set that class';

function selectOf(id, label, options) {
  return h('label', {}, label, h('select', { id }, options.map(([value, text]) => h('option', { value }, text))));
}

function describeReview(review) {
  if (!review) return '—';
  const verb = { accept: 'accepted', keep: 'kept', set: 'set to' }[review.action];
  return `${verb} ${review.label}`;
}

function labelRow(item, selected, onPick) {
  const p = item.probabilities[item.suggested_label];
  const differs = item.given_label !== item.suggested_label;
  return h(
    'tr',
    { 'data-index': item.index, class: [selected ? 'sel' : '', item.is_label_issue ? 'issue' : ''].join(' ').trim() || null, onclick: onPick },
    h('td', { class: 'num' }, item.index, item.is_validation ? h('span', { class: 'tag', title: 'held out for validation' }, 'val') : null),
    h('td', { class: 'text', title: item.text }, item.text),
    h('td', {}, h('span', { class: 'chip' }, item.given_label === null ? '(none)' : item.given_label)),
    h('td', {}, h('span', { class: differs ? 'chip strong' : 'chip' }, item.suggested_label), h('span', { class: 'muted' }, ` ${pct(p, 0)}`)),
    h('td', { class: 'quality' }, bar(item.label_quality), h('span', { class: 'num' }, num(item.label_quality, 2))),
    h('td', { class: 'decision' }, item.review ? h('span', { class: `chip d-${item.review.action}` }, describeReview(item.review)) : '—'),
  );
}

async function reviewCard(ctx, jobId) {
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  // The job's classes, in its own order, are the keys of any row's probabilities.
  const classes = Object.keys((await api(`${path}/labels?limit=1`)).data[0].probabilities);
  const anyClass = [['', 'any'], ...classes.map((c) => [c, c])];
  const controls = h('div', { class: 'filters' },
    selectOf('review-order', 'Order', [['label_quality', 'worst label quality first'], ['index', 'row order'],
      ['random', 'random sample (for trusted rows)']]),
    selectOf('review-flag', 'Flag', [['', 'all rows'], ['true', 'flagged as label issues'], ['false', 'not flagged']]),
    selectOf('review-given', 'Given', anyClass),
    selectOf('review-suggested', 'Suggested', anyClass),
    selectOf('review-reviewed', 'Reviewed', [['', 'any'], ['false', 'not yet'], ['true', 'reviewed']]),
    h('label', {}, 'Search', h('input', { id: 'review-search', type: 'search', placeholder: 'text contains…', maxLength: 200 })));
  const rows = h('tbody', { id: 'review-rows' });
  const table = h('table', { class: 'grid review', tabIndex: 0 },
    h('thead', {}, h('tr', {}, ['#', 'Text', 'Given', 'Suggested', 'Quality', 'Decision'].map((t) => h('th', {}, t)))), rows);
  const counter = h('span', { id: 'review-count', class: 'muted' });
  const prev = h('button', { type: 'button', class: 'ghost', id: 'review-prev' }, '← Previous');
  const next = h('button', { type: 'button', class: 'ghost', id: 'review-next' }, 'Next →');
  const status = h('p', { id: 'review-status', class: 'muted', 'aria-live': 'polite' }, KEYS_HELP);
  const actions = h('div', { class: 'decide', id: 'review-actions' });
  const detail = h('div', { class: 'detail', id: 'review-detail' });
  const datasetName = h('input', { id: 'reviewed-name', maxLength: 200, placeholder: 'name of the new dataset' });
  const saved = h('span', { id: 'reviewed-saved' });

  const state = { cursors: [-1], at: 0, page: null, sel: 0 };
  let chain = Promise.resolve(); // keyboard actions run one after another, in the order pressed
  const serial = (fn) => (...args) => { chain = chain.then(() => guarded(fn)(...args)); return chain; };

  function query(extra = {}) {
    const params = new URLSearchParams({ order: $('#review-order', controls).value, ...extra });
    const pairs = [['is_label_issue', '#review-flag'], ['given_label', '#review-given'],
      ['suggested_label', '#review-suggested'], ['reviewed', '#review-reviewed'], ['q', '#review-search']];
    for (const [name, sel] of pairs) {
      const value = $(sel, controls).value.trim();
      if (value) params.set(name, value);
    }
    return params;
  }

  function draw() {
    const page = state.page;
    fill(rows, ...page.data.map((item, i) => labelRow(item, i === state.sel, () => { state.sel = i; draw(); })));
    if (!page.data.length) rows.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No rows match these filters.')));
    const first = state.at * PAGE_SIZE;
    counter.textContent = page.total ? `rows ${first + 1}–${first + page.data.length} of ${page.total}` : '0 rows';
    prev.disabled = state.at === 0;
    next.disabled = !page.has_more;
    const item = page.data[state.sel];
    fill(actions, 
      h('span', { class: 'muted' }, item ? `Row ${item.index}:` : ''),
      h('button', { type: 'button', disabled: !item, onclick: () => decide('accept') }, 'a · accept suggestion'),
      h('button', { type: 'button', class: 'ghost', disabled: !item, onclick: () => decide('keep') }, 'g · keep given'),
      classes.slice(0, 9).map((c, i) => h('button', { type: 'button', class: 'ghost', disabled: !item, onclick: () => decide('set', c) }, `${i + 1} · ${c}`)),
    );
    // The selected row in full: its whole text and every class's probability, to decide on.
    fill(detail, item ? [h('p', { class: 'ptext' }, item.text), probabilityBars(item.probabilities)] : null);
    const row = rows.children[state.sel];
    if (row && row.scrollIntoView) row.scrollIntoView({ block: 'nearest' });
  }

  async function load(sel = 0) {
    const page = await api(`${path}/labels?${query({ after: state.cursors[state.at], limit: PAGE_SIZE })}`);
    if (!ctx.alive) return;
    state.page = page;
    state.sel = sel === 'last' ? Math.max(0, page.data.length - 1) : sel;
    if (page.next_cursor !== null) state.cursors[state.at + 1] = page.next_cursor;
    draw();
  }

  async function turn(delta, sel = 0) {
    if (delta > 0 && !state.page.has_more) return;
    if (delta < 0 && state.at === 0) return;
    state.at += delta;
    await load(sel);
  }

  async function move(delta) {
    const target = state.sel + delta;
    if (target < 0) return turn(-1, 'last');
    if (target >= state.page.data.length) return turn(1, 0);
    state.sel = target;
    draw();
    return undefined;
  }

  const decide = serial(async (action, label) => {
    const item = state.page && state.page.data[state.sel];
    if (!item) return;
    const decision = { index: item.index, action };
    if (action === 'set') decision.label = label;
    const out = await api(`${path}/reviews`, { method: 'POST', json: { reviews: [decision] } });
    item.review = out.data[0];
    status.textContent = `Row ${item.index}: ${describeReview(item.review)} — saved (${out.n_reviewed} reviewed in this job). ${KEYS_HELP}`;
    await move(1);
    draw();
  });
  const step = serial(move);

  const restart = serial(async () => { state.cursors = [-1]; state.at = 0; await load(0); });
  let typing = null;
  for (const el of controls.querySelectorAll('select')) el.addEventListener('change', () => { restart(); table.focus(); });
  $('#review-search', controls).addEventListener('input', () => { clearTimeout(typing); typing = setTimeout(restart, 250); });
  prev.addEventListener('click', serial(() => turn(-1, 0)));
  next.addEventListener('click', serial(() => turn(1, 0)));

  view.onKey = (event) => {
    if (event.target.closest && event.target.closest('input, textarea, select')) {
      if (event.key === 'Escape') event.target.blur();
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey || !state.page) return;
    const k = event.key;
    if (k === 'j' || k === 'ArrowDown') step(1);
    else if (k === 'k' || k === 'ArrowUp') step(-1);
    else if (k === 'a') decide('accept');
    else if (k === 'g') decide('keep');
    else if (/^[1-9]$/.test(k) && Number(k) <= classes.length) decide('set', classes[Number(k) - 1]);
    else return;
    event.preventDefault();
  };

  const exportCsv = guarded(() => download(`${path}/labels?${query({ format: 'csv' })}`, `${jobId}-labels.csv`));
  const exportCorrected = guarded(() => download(`${path}/labels?format=csv&corrected=true`, `${jobId}-corrected.csv`));
  const saveDataset = guarded(async () => {
    const body = datasetName.value.trim() ? { name: datasetName.value.trim() } : {};
    const ds = await api(`${path}/reviews/dataset`, { method: 'POST', json: body });
    fill(saved, `Saved as dataset “${ds.name}” (${ds.n_rows} rows; reviewed rows marked trusted). `,
      h('a', { href: '#/datasets' }, 'Datasets'));
  });

  await load(0);
  return card('Review labels', controls, h('div', { class: 'row' }, prev, next, counter),
    h('div', { class: 'scroll tall' }, table), actions, detail, status,
    h('div', { class: 'row exports' },
      h('button', { type: 'button', class: 'ghost', id: 'export-csv', onclick: exportCsv }, 'Export CSV (these filters)'),
      h('button', { type: 'button', class: 'ghost', id: 'export-corrected', onclick: exportCorrected }, 'Export corrected CSV (all rows)'),
      h('span', { class: 'spacer' }), datasetName,
      h('button', { type: 'button', id: 'save-dataset', onclick: saveDataset }, 'Save as dataset'), saved));
}
