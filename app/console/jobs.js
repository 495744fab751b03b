// The sidyp console: the jobs page (start form built from the API's JobParams schema, live
// list), a job's page (progress by stage, events, cancel, the report with its plots). Uses console.js.
'use strict';

const STAGES = ['queued', 'classifier', 'prior', 'refiner', 'posterior', 'served', 'plain', 'select', 'refit', 'succeeded'];
const PLOTS = [
  ['reliability', 'Reliability: confidence vs accuracy, before and after'],
  ['noise_matrix', 'Estimated noise matrix'],
  ['class_distribution', 'Classes: given vs suggested'],
  ['confusion', 'Confusion matrix on the gold rows'],
  ['label_quality', 'Label quality'],
];

// ---------------------------------------------------------------- the start form, from /openapi.json
async function jobParamsSchema() {
  const spec = await (await fetch('/openapi.json', { credentials: 'omit' })).json();
  return spec.components.schemas.JobParams;
}

function paramField(name, schema) {
  const variants = schema.anyOf || [schema];
  const types = new Set(variants.map((v) => v.type));
  const integerOnly = types.size === 1 && types.has('integer');
  const bounds = variants.find((v) => v.minimum !== undefined || v.maximum !== undefined) || {};
  const input = h('input', {
    id: `param-${name}`,
    name,
    type: integerOnly ? 'number' : 'text',
    step: integerOnly ? 1 : null,
    min: bounds.minimum,
    max: bounds.maximum,
    value: schema.default === null || schema.default === undefined ? '' : String(schema.default),
    placeholder: schema.default === null ? 'default' : null,
  });
  const range = bounds.minimum !== undefined ? ` (${bounds.minimum}–${bounds.maximum})` : '';
  const hint = h('span', { class: 'hint' }, `${schema.description || ''}${range}`);
  const error = h('span', { class: 'field-error', id: `param-${name}-error` });
  const read = () => {
    const raw = input.value.trim();
    if (raw === '') return undefined;
    if ((types.has('integer') || types.has('number')) && raw !== '' && !Number.isNaN(Number(raw))) return Number(raw);
    return raw;
  };
  return { name, read, error, el: h('label', { class: 'param' }, schema.title || name, input, hint, error) };
}

function datasetSelect(id, datasets, optional, chosen) {
  const options = datasets.map((d) => h('option', { value: d.id, selected: d.id === chosen }, `${d.name || d.id} (${d.n_rows} rows)`));
  return h('select', { id }, optional ? h('option', { value: '' }, 'none') : null, options);
}

async function startForm(ctx, query, onStarted) {
  const [datasets, schema] = await Promise.all([api('/v1/datasets?limit=100'), jobParamsSchema()]);
  if (!datasets.data.length) {
    return h('p', { class: 'muted' }, 'Upload a dataset first (', h('a', { href: '#/datasets' }, 'Datasets'), ').');
  }
  const train = datasetSelect('job-dataset', datasets.data, false, query.get('dataset'));
  const validation = datasetSelect('job-validation', datasets.data, true);
  const evaluation = datasetSelect('job-eval', datasets.data, true);
  const fields = Object.entries(schema.properties).map(([name, s]) => paramField(name, s));
  const submit = guarded(async () => {
    fields.forEach((f) => { f.error.textContent = ''; });
    const params = {};
    for (const f of fields) {
      const value = f.read();
      if (value !== undefined) params[f.name] = value;
    }
    const body = { dataset_id: train.value, params };
    if (validation.value) body.validation_dataset_id = validation.value;
    if (evaluation.value) body.eval_dataset_id = evaluation.value;
    try {
      onStarted(await api('/v1/jobs', { method: 'POST', json: body }));
    } catch (err) {
      // A refused parameter is shown under its field as well as in the banner.
      for (const e of (err.problem && err.problem.errors) || []) {
        const f = fields.find((x) => e.field && e.field.split('.').includes(x.name));
        if (f) f.error.textContent = e.message;
      }
      throw err;
    }
  });
  return h(
    'form',
    { class: 'start', onsubmit: (e) => { e.preventDefault(); submit(); } },
    h('div', { class: 'fields' },
      h('label', {}, 'Dataset', train),
      h('label', {}, 'Validation dataset', validation),
      h('label', {}, 'Evaluation dataset (with gold labels)', evaluation)),
    h('details', { open: true }, h('summary', {}, 'Parameters (defaults from the API)'),
      h('div', { class: 'params' }, fields.map((f) => f.el))),
    h('button', { type: 'submit', id: 'start-job' }, 'Start job'),
  );
}

// ---------------------------------------------------------------- jobs list
function progressCell(job) {
  const p = job.progress || {};
  return h('div', { class: 'progress' }, bar(p.fraction), h('span', { class: 'muted' }, `${p.stage || ''} ${pct(p.fraction, 0)}`));
}

function cancelButton(job, after) {
  if (TERMINAL.has(job.status)) return null;
  return h('button', {
    type: 'button',
    class: 'ghost danger',
    onclick: guarded(async () => { await api(`/v1/jobs/${encodeURIComponent(job.id)}/cancel`, { method: 'POST' }); await after(); }),
  }, 'Cancel');
}

async function pageJobs(ctx, query) {
  const main = $('#main');
  const list = h('div', { id: 'jobs' }, h('p', { class: 'muted' }, 'Loading…'));
  const formBox = h('div', {}, h('p', { class: 'muted' }, 'Loading…'));
  main.append(h('h1', {}, 'Jobs'), card('Start a job', formBox), card('Your jobs', list));
  const names = new Map();

  async function refresh() {
    const page = await api('/v1/jobs?limit=50');
    if (!ctx.alive) return;
    if (!page.data.length) {
      fill(list, h('p', { class: 'muted', id: 'no-jobs' }, 'No jobs yet.'));
      return;
    }
    fill(list, h('table', { class: 'grid' },
      h('thead', {}, h('tr', {}, ['Job', 'Dataset', 'Status', 'Progress', 'Created', ''].map((t) => h('th', {}, t)))),
      h('tbody', {}, page.data.map((j) => h('tr', { 'data-id': j.id },
        h('td', {}, h('a', { href: `#/jobs/${encodeURIComponent(j.id)}`, class: 'mono' }, j.id)),
        h('td', {}, names.get(j.dataset_id) || j.dataset_id),
        h('td', {}, badge(j.status)),
        h('td', {}, progressCell(j)),
        h('td', {}, when(j.created_at)),
        h('td', {}, cancelButton(j, refresh)))))));
  }

  const datasets = await api('/v1/datasets?limit=100');
  datasets.data.forEach((d) => names.set(d.id, d.name || d.id));
  fill(formBox, await startForm(ctx, query, (job) => { location.hash = `#/jobs/${job.id}`; }));
  await refresh();
  every(1500, guarded(refresh));
}

// ---------------------------------------------------------------- a job's page
// a stage only some jobs run: its pill shows once it has started
const OPTIONAL_STAGES = new Set(['refit']);

function stagePills(seen, current, status) {
  const shown = STAGES.filter((s) => !OPTIONAL_STAGES.has(s) || seen.has(s));
  return h('ol', { class: 'stages' }, shown.map((s) => {
    let state = seen.has(s) ? 'done' : 'todo';
    if (s === current && !TERMINAL.has(status)) state = 'now';
    if (s === 'succeeded' && status !== 'succeeded') state = 'todo';
    return h('li', { class: state }, s);
  }));
}

function eventLine(e) {
  const metrics = Object.entries(e.metrics || {}).slice(0, 6).map(([k, v]) => `${k}=${typeof v === 'number' ? Number(v.toFixed(4)) : v}`);
  return h('li', {}, h('span', { class: 'muted mono' }, new Date(e.at).toLocaleTimeString()), ' ',
    h('strong', {}, e.stage || e.type), ' ', e.message || '', metrics.length ? h('span', { class: 'muted' }, ` ${metrics.join(' ')}`) : null);
}

async function pageJob(ctx, jobId) {
  const main = $('#main');
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  let job = await api(path);
  if (!ctx.alive) return;
  const head = h('div', { id: 'job-status' });
  const events = h('ol', { class: 'events', id: 'events' });
  const outputs = h('div', { id: 'outputs' });
  const seen = new Set();
  let lastSeq = -1;
  main.append(h('h1', {}, 'Job ', h('span', { class: 'mono' }, jobId)), card(null, head),
    card(null, h('details', { open: !TERMINAL.has(job.status) }, h('summary', {}, 'Events'), events)), outputs);

  function drawHead() {
    const p = job.progress || {};
    fill(head, 
      h('div', { class: 'row' }, badge(job.status), h('span', { class: 'muted' }, p.message || ''), h('span', { class: 'spacer' }),
        job.model_id ? h('a', { class: 'button', href: `#/models/${encodeURIComponent(job.model_id)}` }, 'Open the model') : null,
        cancelButton(job, poll)),
      stagePills(seen, p.stage, job.status),
      h('div', { class: 'progress wide' }, bar(p.fraction), h('span', {}, `${p.stage} ${pct(p.fraction, 0)}`)),
      job.error ? h('p', { class: 'bad' }, `${job.error.code}: ${job.error.message}`) : null,
      h('p', { class: 'muted' }, `Created ${when(job.created_at)} · started ${when(job.started_at)} · finished ${when(job.finished_at)}`),
    );
  }

  async function pollEvents() {
    for (;;) {
      const page = await api(`${path}/events?after=${lastSeq}&limit=200`);
      if (!ctx.alive) return;
      for (const e of page.data) {
        if (e.stage) seen.add(e.stage);
        events.append(eventLine(e));
        lastSeq = e.seq;
      }
      if (!page.has_more) return;
    }
  }

  let stopPolling = null;
  async function poll() {
    job = await api(path);
    await pollEvents();
    if (!ctx.alive) return;
    drawHead();
    if (TERMINAL.has(job.status) && stopPolling) {
      stopPolling();
      stopPolling = null;
      if (job.status === 'succeeded') await showOutputs(ctx, jobId, outputs);
    }
  }

  await pollEvents();
  drawHead();
  if (!TERMINAL.has(job.status)) stopPolling = every(1000, guarded(poll));
  else if (job.status === 'succeeded') await showOutputs(ctx, jobId, outputs);
}

// The report and the review table load independently: a report that cannot be shown (say, written by an
// older service) says why in its card, and the labels can still be reviewed.
async function showOutputs(ctx, jobId, box) {
  const path = `/v1/jobs/${encodeURIComponent(jobId)}`;
  const summary = h('div', { id: 'report' }, h('p', { class: 'muted' }, 'Loading…'));
  const plots = h('div', { class: 'plots', id: 'plots' });
  const html = h('button', { type: 'button', class: 'ghost', id: 'report-html',
    onclick: guarded(() => download(`${path}/report.html`, `${jobId}-report.html`)) }, 'Download report.html');
  fill(box, card('Report', summary, plots, h('div', { class: 'row' }, html)));
  box.append(await reviewCard(ctx, jobId));
  try {
    const report = await api(`${path}/report`);
    if (!ctx.alive) return;
    fill(summary, reportSummary(report));
    await showPlots(jobId, plots);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status === 401) throw err;
    fill(summary, h('p', { class: 'bad' }, err.message));
  }
}

// ---------------------------------------------------------------- the report
const MODEL_NAMES = {
  noisy_classifier: 'classifier trained on the given labels',
  refined_posterior: 'refined labels (SiDyP)',
  served: 'served model (the one you query)',
};

function scoresTable(ev) {
  const rows = Object.entries(MODEL_NAMES).filter(([key]) => ev[key] && typeof ev[key].accuracy === 'number');
  if (!rows.length) return null;
  return h('table', { class: 'grid compact' },
    h('thead', {}, h('tr', {}, ['', 'accuracy', 'macro F1', 'ECE'].map((t) => h('th', {}, t)))),
    h('tbody', {}, rows.map(([key, name]) => h('tr', {}, h('td', {}, name),
      h('td', { class: 'num' }, num(ev[key].accuracy)), h('td', { class: 'num' }, num(ev[key].macro_f1)),
      h('td', { class: 'num' }, num(ev[key].ece))))));
}

function perClassTable(perClass) {
  return h('table', { class: 'grid compact' },
    h('thead', {}, h('tr', {}, ['class', 'precision', 'recall', 'F1', 'support'].map((t) => h('th', {}, t)))),
    h('tbody', {}, Object.entries(perClass).map(([c, m]) => h('tr', {}, h('td', {}, c), h('td', { class: 'num' }, num(m.precision)),
      h('td', { class: 'num' }, num(m.recall)), h('td', { class: 'num' }, num(m.f1)), h('td', { class: 'num' }, m.support)))));
}

function figure(label, value) {
  return h('div', { class: 'figure' }, h('div', { class: 'value' }, value), h('div', { class: 'muted' }, label));
}

const KEPT = { refined: 'the refined labels (SiDyP)', plain: "the plain classifier's labels",
  served: 'the distilled served model', plain_model: 'the plain classifier (fine-tuned on the given labels)',
  probe: 'the linear probe (a logistic regression on the frozen sentence embeddings)' };

const ESTIMATE_ROWS = { llm_labels: 'given (LLM) labels', wrong_label_share: 'share of wrong given labels',
  noisy_classifier: 'plain classifier', delivered_labels: 'delivered labels', delivered_model: 'delivered model',
  noisy_classifier_on_evaluation: 'plain classifier, on the evaluation texts',
  delivered_model_on_evaluation: 'delivered model, on the evaluation texts' };
const ESTIMATE_SOURCES = { posterior: "refined posteriors; interval spans the method of moments'",
  moments: 'method of moments', bound: 'bound: noise matrix near-singular',
  held: 'method of moments, held to the estimated share of wrong labels (the model reproduces its labels)',
  trusted: 'trusted rows (Wilson 95 %)',
  transferred: 'trusted rows, carried to these texts by confidence (ATC; bootstrap 95 %)',
  carried: 'its estimate on the validation texts, carried to these texts by confidence (ATC)' };
const MEASURED = ['trusted', 'transferred']; // read from trusted rows, not from the noisy labels

// The report's accuracy estimates (no gold needed), each with its interval and where it comes from.
function estimatesTable(found) {
  const rows = Object.entries(ESTIMATE_ROWS).filter(([key]) => found && found[key] && typeof found[key].accuracy === 'number');
  if (!rows.length) return null;
  return h('table', { class: 'grid compact estimates' },
    h('thead', {}, h('tr', {}, ['', 'estimate', 'interval', 'from', 'rows'].map((t) => h('th', {}, t)))),
    h('tbody', {}, rows.map(([key, name]) => {
      const e = found[key];
      return h('tr', { 'data-estimate': key }, h('td', {}, name), h('td', { class: 'num' }, num(e.accuracy)),
        h('td', { class: 'num' }, `${num(e.low)} – ${num(e.high)}`), h('td', {}, ESTIMATE_SOURCES[e.method] || e.method),
        h('td', { class: 'num' }, e.rows));
    })));
}

// What the trusted rows fitted again (selection.refit: the labels' and the model's candidate), as
// selection.refit_summary says it.
function refitSummary(refit) {
  const owners = { plain: 'the plain classifier', plain_model: 'the plain classifier', probe: 'the linear probe' };
  if (refit.labels && owners[refit.labels] === owners[refit.model]) return `${owners[refit.labels]}'s labels and model`;
  const words = refit.labels ? [`${owners[refit.labels]}'s labels`] : [];
  words.push(refit.model === 'served' ? 'the distilled served model' : `${owners[refit.model]}'s model`);
  return words.join(' and ');
}

// What the do-no-harm stage delivered, and why, in the report's own words, with the estimates.
function keptSummary(sel, found) {
  if (!sel || !sel.kept) return null;
  const table = estimatesTable(found);
  return h('div', { class: 'kept', 'data-kept': sel.kept },
    h('h3', {}, 'What was delivered'),
    h('p', {}, `Labels: ${KEPT[sel.kept] || sel.kept}. Model: ${KEPT[sel.kept_model] || sel.kept_model}.`),
    sel.refit ? h('p', { class: 'refit', 'data-refit': [sel.refit.labels, sel.refit.model].filter(Boolean).join(' ') },
      `Fitted again with the ${sel.refit.trusted_rows} trusted labels in place: ${refitSummary(sel.refit)}. `
      + 'The estimates are of the fits that left those rows out.') : null,
    h('p', { class: 'muted' }, sel.reason || ''),
    table ? h('h3', {}, 'Estimates') : null, table,
    table && Object.values(found).some((e) => e && typeof e.accuracy === 'number' && !MEASURED.includes(e.method))
      ? h('p', { class: 'muted' }, 'Without trusted rows these come from the noisy labels alone: the interval covers '
      + 'row sampling and the disagreement of two estimators, not their shared bias. About 100 hand-checked rows '
      + '(trusted_label) replace them with measured accuracies.') : null);
}

// A warning that hand-checked rows would settle leads to the review table's random sample, every filter
// cleared: rows picked by label quality or by flag are not a random draw, and every figure measured on
// trusted rows assumes one. Reviewed rows become trusted rows of the dataset the table saves.
function sampleForTrusted() {
  const order = document.getElementById('review-order');
  if (!order) return;
  const box = order.closest('.filters');
  for (const field of box.querySelectorAll('select, input')) field.value = '';
  order.value = 'random';
  order.dispatchEvent(new Event('change'));
  const review = order.closest('.card') || box;
  if (review.scrollIntoView) review.scrollIntoView({ block: 'start' });
}

function reportSummary(r) {
  const served = r.served || {};
  const ev = r.eval || {};
  const figures = h('div', { class: 'figures' },
    figure('rows', r.n_rows), figure('labelled', r.n_labelled), figure('estimated noise', pct(r.noise_share)),
    figure('flagged as label issues', r.n_flagged),
    typeof ev.llm_label_accuracy === 'number' ? figure('given labels right (gold rows)', pct(ev.llm_label_accuracy)) : null,
    typeof served.temperature === 'number' ? figure('served model temperature', num(served.temperature, 2)) : null);
  const warnings = (r.warnings || []).map((w) => h('li', { 'data-warning': w.code || '' },
    typeof w === 'string' ? w : w.message || w.code,
    w.asks_for === 'trusted_rows' ? h('button', { type: 'button', class: 'ghost sample-for-trusted',
      onclick: sampleForTrusted }, 'Check a random sample') : null));
  const scores = scoresTable(ev);
  const best = (ev.served && ev.served.per_class) || (ev.refined_posterior && ev.refined_posterior.per_class);
  return h('div', {}, figures, keptSummary(r.selection, r.estimates),
    warnings.length ? h('div', { class: 'warnings' }, h('h3', {}, 'Warnings'), h('ul', {}, warnings)) : null,
    scores ? h('div', {}, h('h3', {}, `Scores on ${ev.n_scored || ev.n_rows} gold-labelled rows`), scores) : null,
    best ? h('div', {}, h('h3', {}, `Per class (${ev.served ? 'served model' : 'refined labels'})`), perClassTable(best)) : null);
}

async function showPlots(jobId, box) {
  const shown = [];
  for (const [name, caption] of PLOTS) {
    try {
      const url = await blobUrl(`/v1/jobs/${encodeURIComponent(jobId)}/plots/${name}.svg`);
      shown.push(h('figure', { class: 'plot', 'data-plot': name }, h('img', { src: url, alt: caption }), h('figcaption', {}, caption)));
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404) throw err; // 404: not drawn for this job
    }
  }
  fill(box, ...(shown.length ? shown : [h('p', { class: 'muted' }, 'No plots for this job.')]));
}
