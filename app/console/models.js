// The sidyp console: the models list and a model's page (texts in, class probabilities out as bars).
// Uses console.js.
'use strict';

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
