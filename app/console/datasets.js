// The sidyp console: the datasets page (upload by drop or picker, a preview, a refused upload's row errors
// next to its rows, the list). Uses console.js.
'use strict';

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
