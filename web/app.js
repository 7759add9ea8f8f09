// sidekill's workflow debugger: wires the input, the facts and the tools to the policy
// module (the wasm-pack web build in ./pkg) and renders its answers. Every decision shown
// comes from the module; this file parses nothing itself (parseDocuments is the module's),
// plans nothing itself, and only builds requests and lays answers out.
//
// Performance marks: `sidekill:policy-ready` once the module is instantiated and
// `sidekill:first-plan` once the first plan is on screen (relative to navigation start).

import init, { plan, matrix, policyInfo, parseDocuments, callJson } from './policy.js';
import { h, replace } from './dom.js';
import { renderSubject, renderMatrix, renderDiagnostics, subjectTitle, verdictBadge, severityBadge, actionShell } from './render.js';
import { encodeState, readSharedState } from './share.js';
import { annotationsAt, withAnnotation, annotationLine, writeBack } from './edit.js';
import { ComparisonModule, diffAnswers, renderDiff, MAX_MODULE_BYTES } from './compare.js';
import { toYaml } from './yaml-emit.js';
import { examples as examplesIndex, firstExample } from './start.js';

const $ = (id) => document.getElementById(id);
/** Inputs larger than the raw ABI's request limit are not read. */
const MAX_INPUT = 8 * 1024 * 1024;
/** Inputs larger than this are not written into the URL as you type. */
const MAX_SHARED = 256 * 1024;
const COMPARE_TIMEOUT_MS = 3000;

const state = {
  /** Parsed documents of the input, as typed. */
  docs: [],
  /** Per document: {object (with the edit), request, answer}. */
  results: [],
  /** The kill-cmd edit in progress: {docIndex, podPath, key, value (null removes)}. */
  overlay: null,
  facts: {},
  runs: 0,
  firstPlan: false,
  simulate: false,
  /** The loaded comparison module and its file name. */
  comparison: null,
  comparisonName: '',
  compareToken: 0,
};

// ---------------------------------------------------------------- planning

function readFacts() {
  const facts = {};
  const executor = $('fact-executor').value;
  if (executor) facts.executor = executor;
  const version = $('fact-cluster').value.trim();
  if (version) facts.clusterVersion = version;
  if ($('fact-proxy').checked) facts.podsProxy = true;
  const mains = $('fact-mains').value.split(',').map((s) => s.trim()).filter(Boolean);
  if (mains.length) facts.mainContainers = mains;
  return facts;
}

function writeFacts(facts = {}) {
  $('fact-executor').value = facts.executor || '';
  $('fact-cluster').value = facts.clusterVersion || '';
  $('fact-proxy').checked = facts.podsProxy === true;
  $('fact-mains').value = (facts.mainContainers || []).join(', ');
}

/** Plans the input as it stands (with the kill-cmd edit applied) and renders everything. */
function run({ fromEdit = false } = {}) {
  // Every attempt, read or not, is counted (tests wait on it).
  document.documentElement.dataset.attempts = String(Number(document.documentElement.dataset.attempts || 0) + 1);
  const text = $('input').value;
  if (text.length > MAX_INPUT) {
    showInputError({ message: `the input is ${text.length} characters; the policy takes at most ${MAX_INPUT}` });
    return;
  }
  const parsed = parseDocuments(text);
  if (parsed.error) {
    showInputError(parsed.error);
    return;
  }
  clearInputError();
  state.docs = parsed.ok;
  state.facts = readFacts();
  if (state.overlay && !state.docs[state.overlay.docIndex]) state.overlay = null;
  state.results = state.docs.map((doc, i) => {
    const o = state.overlay;
    const object = o && o.docIndex === i ? withAnnotation(doc, o.podPath, o.key, o.value) : doc;
    const request = { object, facts: state.facts };
    return { object, request, answer: plan(request) };
  });
  renderAnswer();
  refreshEditor(fromEdit);
  refreshSimTargets();
  if (state.simulate) runSimulation();
  if (state.comparison?.info) runComparison();
  scheduleShare();
  state.runs += 1;
  document.documentElement.dataset.runs = String(state.runs);
  if (!state.firstPlan && subjects().length > 0) {
    state.firstPlan = true;
    performance.mark('sidekill:first-plan');
  }
}

/** Every planned pod: {docIndex, subject, id}. */
function subjects() {
  const out = [];
  state.results.forEach((r, docIndex) => {
    (r.answer.ok?.subjects || []).forEach((subject, j) => out.push({ docIndex, subject, id: `pod-${docIndex + 1}-${j + 1}` }));
  });
  return out;
}

function renderAnswer() {
  $('answer').classList.remove('stale');
  const results = $('results');
  const all = subjects();
  const multiDoc = state.results.length > 1;
  const blocks = [];
  const counts = { stops: 0, 'may-stop': 0, 'cannot-stop': 0, error: 0, warning: 0, info: 0, docErrors: 0 };
  let factsError = null;
  state.results.forEach((r, i) => {
    if (r.answer.error) {
      counts.docErrors += 1;
      const e = r.answer.error;
      if (e.path?.startsWith('facts.')) factsError = e;
      blocks.push(h('div', { class: 'doc-error', dataset: { code: e.code } },
        h('h3', {}, `Document ${i + 1}: no plan (${e.code})`),
        h('p', {}, e.message),
        e.path ? h('p', { class: 'small' }, 'Field: ', h('code', {}, e.path)) : null));
      return;
    }
    for (const s of all.filter((x) => x.docIndex === i)) {
      for (const stop of s.subject.plan.stops) counts[stop.verdict] += 1;
      for (const d of s.subject.diagnostics) counts[d.severity] += 1;
      const el = renderSubject(s.subject, s.id);
      if (multiDoc) el.querySelector('h3').prepend(h('span', { class: 'badge muted' }, `document ${i + 1}`), ' ');
      blocks.push(el);
    }
  });
  if (!state.results.length) blocks.push(h('p', { class: 'muted' }, 'Paste an object or pick an example to see its plan.'));
  replace(results, blocks);

  const nav = $('subject-nav');
  nav.hidden = all.length < 2;
  replace(nav, all.length < 2 ? null : h('ul', {}, all.map((s) => h('li', {},
    h('a', { href: `#${s.id}`, onclick: (e) => { e.preventDefault(); focusHeading(s.id); } }, subjectTitle(s.subject.source))))));

  const factsErr = $('facts-error');
  factsErr.hidden = !factsError;
  factsErr.textContent = factsError ? factsError.message : '';
  for (const [id, path] of [['fact-cluster', 'facts.clusterVersion'], ['fact-mains', 'facts.mainContainers'], ['fact-executor', 'facts.executor']]) {
    $(id).setAttribute('aria-invalid', String(Boolean(factsError?.path?.startsWith(path))));
  }

  const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const parts = [];
  if (state.results.length) {
    parts.push(`${plural(state.results.length, 'document')}, ${plural(all.length, 'pod')}`);
    parts.push(`sidecars to stop: ${counts.stops} will stop, ${counts['may-stop']} may stop, ${counts['cannot-stop']} cannot stop`);
    parts.push(`${plural(counts.error, 'error')}, ${plural(counts.warning, 'warning')}`);
    if (counts.docErrors) parts.push(`${plural(counts.docErrors, 'document')} without a plan`);
    if (state.overlay) parts.push('with your unsaved annotation edit');
  }
  $('summary').textContent = parts.length ? `${parts.join('. ')}.` : 'No input.';

  const used = new Map();
  for (const s of all) {
    const set = used.get(s.subject.matrix.executor) || new Set();
    s.subject.matrix.applies.forEach((c) => set.add(c));
    used.set(s.subject.matrix.executor, set);
  }
  if (state.matrix) replace($('matrix-table'), renderMatrix(state.matrix, used));
}

function focusHeading(id) {
  const heading = document.querySelector(`#${CSS.escape(id)} h3`);
  heading?.scrollIntoView({ block: 'start' });
  heading?.focus();
}

// ---------------------------------------------------------------- input errors

function offsetOf(text, line, column) {
  let offset = 0;
  for (let l = 1; l < line; l++) {
    const next = text.indexOf('\n', offset);
    if (next < 0) return text.length;
    offset = next + 1;
  }
  return Math.min(text.length, offset + Math.max(0, column - 1));
}

function showInputError(error) {
  const box = $('input-error');
  const input = $('input');
  const where = error.line ? `Line ${error.line}, column ${error.column}: ` : '';
  // The position leads; the message need not repeat it.
  const message = error.line ? error.message.replace(` at line ${error.line}, column ${error.column}`, '') : error.message;
  replace(box,
    h('p', { dataset: { line: error.line ?? '', column: error.column ?? '' } }, h('strong', {}, where), message),
    error.line ? h('button', {
      type: 'button',
      onclick: () => {
        const at = offsetOf(input.value, error.line, error.column);
        input.focus();
        input.setSelectionRange(at, Math.min(input.value.length, at + 1));
        const lineHeight = parseFloat(getComputedStyle(input).lineHeight) || 20;
        input.scrollTop = Math.max(0, (error.line - 3) * lineHeight);
      },
    }, `Go to line ${error.line}`) : null,
    h('p', { class: 'small' }, 'The answer below is from the last input that could be read.'));
  box.hidden = false;
  input.setAttribute('aria-invalid', 'true');
  $('answer').classList.add('stale');
  $('summary').textContent = `The input cannot be read: ${where}${message}`;
}

function clearInputError() {
  $('input-error').hidden = true;
  $('input').setAttribute('aria-invalid', 'false');
}

// ---------------------------------------------------------------- kill-cmd editor

/** The editor's policy facts, from the module's policy_info (ABI 1.5): the annotation prefix
 *  of a pod's own kill command and the roles of Argo's own containers, which it never offers.
 *  Null when the module does not answer them: then there is nothing to edit. */
function killCmdFacts() {
  const info = state.info;
  if (typeof info?.killCmdPrefix !== 'string' || !Array.isArray(info.argoOwnRoles)) return null;
  return { prefix: info.killCmdPrefix, argoOwn: new Set(info.argoOwnRoles) };
}
const podKey = (docIndex, subject) => `${docIndex}|${subject.source.path}|${subject.source.template ?? ''}`;
const samePod = (a, b) => a.path === b.path && a.template === b.template;

function setOptions(select, options, wanted) {
  const keep = wanted ?? select.value;
  replace(select, options.map((o) => h('option', { value: o.value }, o.label)));
  if (options.some((o) => o.value === keep)) select.value = keep;
  select.disabled = options.length === 0;
}

function selectedEditTarget() {
  const key = $('edit-pod').value;
  const target = subjects().find((s) => podKey(s.docIndex, s.subject) === key);
  const facts = killCmdFacts();
  if (!target || !facts) return null;
  const container = $('edit-container').value;
  return { ...target, container, key: facts.prefix + container };
}

function refreshEditor(fromEdit) {
  const all = subjects();
  const o = state.overlay;
  setOptions($('edit-pod'), all.map((s) => ({ value: podKey(s.docIndex, s.subject), label: subjectTitle(s.subject.source) })),
    o ? `${o.docIndex}|${o.podPath}` : undefined);
  const target = subjects().find((s) => podKey(s.docIndex, s.subject) === $('edit-pod').value);
  const order = { 'injected-sidecar': 0, 'declared-sidecar': 1, 'native-sidecar': 2, workload: 3, 'argo-main': 4, init: 5 };
  const facts = killCmdFacts();
  const containers = target && facts
    ? target.subject.containers.filter((c) => !facts.argoOwn.has(c.role)).sort((a, b) => (order[a.role] ?? 9) - (order[b.role] ?? 9))
    : [];
  setOptions($('edit-container'), containers.map((c) => ({ value: c.name, label: `${c.name} (${c.role})` })),
    o && facts ? o.key.slice(facts.prefix.length) : undefined);
  const t = selectedEditTarget();
  const value = $('edit-value');
  value.disabled = !t;
  for (const id of ['edit-copy-annotation', 'edit-copy-yaml', 'edit-apply']) $(id).disabled = !t;
  $('edit-discard').disabled = !state.overlay;
  if (!t) {
    const why = facts || !target ? 'No pod to edit.' : 'The policy module does not name the kill-cmd annotation (policy_info killCmdPrefix, ABI 1.5): nothing to edit.';
    replace($('edit-feedback'), h('p', { class: 'small muted' }, why));
    return;
  }
  if (!fromEdit && !state.overlay) {
    const current = annotationsAt(state.docs[t.docIndex], t.subject.source.path)[t.key];
    value.value = typeof current === 'string' ? current : '';
  }
  // What the module says about this container now.
  const s = t.subject;
  const stop = s.plan.stops.find((x) => x.container === t.container);
  const skip = s.plan.skipped.find((x) => x.container === t.container);
  const command = s.commands.find((c) => c.container === t.container);
  const diags = s.diagnostics.filter((d) => d.container === t.container);
  const killDiags = diags.filter((d) => d.code.startsWith('kill-cmd-'));
  value.setAttribute('aria-invalid', String(killDiags.some((d) => d.severity === 'error')));
  const preset = command?.preset?.action;
  const presetButton = $('edit-preset');
  presetButton.hidden = !(preset && preset.kind === 'exec');
  if (!presetButton.hidden) presetButton.textContent = `Use the preset: ${actionShell(preset)}`;
  replace($('edit-feedback'),
    h('p', { class: 'small' },
      stop ? [verdictBadge(stop.verdict), ' ', h('code', {}, t.container), ` is stopped with the ${stop.source} command`,
        command ? [': ', h('code', {}, actionShell(command.sigterm))] : null]
        : skip ? [h('code', {}, t.container), ` is left alone: ${skip.reason}`] : null),
    killDiags.length === 0 && value.value.trim() !== ''
      ? h('p', { class: 'small ok-line' }, 'The annotation reads well: no kill-cmd diagnostic.') : null,
    diags.length ? renderDiagnostics(diags, { heading: false }) : null);
}

function onEditValue() {
  const t = selectedEditTarget();
  if (!t) return;
  const raw = $('edit-value').value;
  state.overlay = { docIndex: t.docIndex, podPath: t.subject.source.path, key: t.key, value: raw === '' ? null : raw };
  run({ fromEdit: true });
}

function fixedText() {
  const o = state.overlay;
  if (!o) return { text: $('input').value, inPlace: true };
  const docs = state.docs.map((d, i) => (i === o.docIndex ? withAnnotation(d, o.podPath, o.key, o.value) : d));
  return writeBack($('input').value, docs, o.key, o.value, parseDocuments);
}

async function copyText(text, what) {
  const out = $('edit-output');
  out.value = text;
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    out.select();
    try { copied = document.execCommand('copy'); } catch { copied = false; }
  }
  $('edit-status').textContent = copied
    ? `${what} copied to the clipboard.`
    : `${what} is below, under "Last copied text": the browser did not allow copying.`;
  if (!copied) $('edit-output-box').open = true;
}

function wireEditor() {
  $('edit-pod').addEventListener('change', () => { state.overlay = null; run(); });
  $('edit-container').addEventListener('change', () => { state.overlay = null; run(); });
  $('edit-value').addEventListener('input', onEditValue);
  $('edit-preset').addEventListener('click', () => {
    const t = selectedEditTarget();
    const preset = t?.subject.commands.find((c) => c.container === t.container)?.preset?.action;
    if (!preset || preset.kind !== 'exec') return;
    $('edit-value').value = JSON.stringify(preset.argv);
    onEditValue();
  });
  $('edit-copy-annotation').addEventListener('click', () => {
    const t = selectedEditTarget();
    if (!t) return;
    const value = $('edit-value').value;
    if (value === '') {
      $('edit-status').textContent = `The value is empty: the fix is to remove ${t.key}.`;
      return;
    }
    copyText(annotationLine(t.key, value), 'The annotation');
  });
  $('edit-copy-yaml').addEventListener('click', () => {
    const { text, inPlace } = fixedText();
    copyText(text, inPlace ? 'The fixed input' : 'The fixed input (written anew: comments are not kept)');
  });
  $('edit-apply').addEventListener('click', () => {
    if (!state.overlay) {
      $('edit-status').textContent = 'Nothing to write: change the value first.';
      return;
    }
    const { text, inPlace } = fixedText();
    $('input').value = text;
    state.overlay = null;
    run();
    $('edit-status').textContent = inPlace
      ? 'Written into the input: one line changed.'
      : 'Written into the input: the documents were written anew, so comments are gone.';
  });
  $('edit-discard').addEventListener('click', () => {
    state.overlay = null;
    run();
    $('edit-status').textContent = 'Edit discarded.';
  });
}

// ---------------------------------------------------------------- injection simulation
// The policy injects (the request fact `facts.inject`, docs/ABI.md 1.4) and plans the injected
// pod; the page only asks for each injector and layout, and shows the answers.

const MESHES = [
  { id: 'istio', name: 'Istio' },
  { id: 'linkerd', name: 'Linkerd' },
  { id: 'kuma', name: 'Kuma' },
];
const MODES = [
  { id: 'classic', name: 'classic (regular container)' },
  { id: 'native', name: 'native (init container, restartPolicy: Always)' },
];
const WORKFLOW_KINDS = new Set(['Workflow', 'WorkflowTemplate', 'ClusterWorkflowTemplate']);

function refreshSimTargets() {
  const all = subjects();
  setOptions($('sim-pod'), all.map((s) => ({
    value: podKey(s.docIndex, s.subject),
    label: s.subject.source.template ? `${subjectTitle(s.subject.source)} (the pod Argo creates)` : subjectTitle(s.subject.source),
  })));
  $('sim-run').disabled = all.length === 0;
}

function runSimulation() {
  const key = $('sim-pod').value;
  const target = subjects().find((s) => podKey(s.docIndex, s.subject) === key);
  const out = $('sim-result');
  if (!target) {
    replace(out, h('p', { class: 'muted' }, 'No pod to simulate.'));
    return;
  }
  const doc = state.results[target.docIndex].object;
  const rows = [];
  for (const mesh of MESHES) {
    for (const mode of MODES) {
      const facts = { ...state.facts, inject: { [mesh.id]: { native: mode.id === 'native' } } };
      const answer = plan({ object: doc, facts });
      const subject = (answer.ok?.subjects || []).find((s) => samePod(s.source, target.subject.source)) || null;
      rows.push({ mesh, mode, answer, subject, injected: subject?.injection?.injected?.find((i) => i.injector === mesh.id) });
    }
  }
  replace(out, h('div', { class: 'table-wrap' },
    h('table', { class: 'sim-table' },
      h('caption', {}, `Injections into ${subjectTitle(target.subject.source)}, planned with the facts above.`),
      h('thead', {}, h('tr', {}, ['Mesh', 'Layout', 'Injected containers', 'What sidekill would do', 'Diagnostics', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((r) => simRow(r, doc, target))))));
  $('sim-status').textContent = `Simulated ${rows.length} injections into ${subjectTitle(target.subject.source)}.`;
}

/** Text with `code` spans, as the policy's messages write them. */
function withCode(text) {
  return text.split('`').map((part, i) => (i % 2 ? h('code', {}, part) : part));
}

/** The document to open for an injected pod: in place where the pod is a template of the input,
 * else (a workflow's pod, which Argo creates) a Pod of its own. */
function injectedDocument(doc, source, pod) {
  if (WORKFLOW_KINDS.has(source.kind) && source.template !== undefined) {
    return { apiVersion: 'v1', kind: 'Pod', metadata: pod.metadata, spec: pod.spec };
  }
  const out = structuredClone(doc);
  const keys = pathKeys(source.path);
  if (!keys.length) return { ...out, metadata: pod.metadata, spec: pod.spec };
  let parent = out;
  for (const k of keys.slice(0, -1)) parent = parent[k];
  const last = keys[keys.length - 1];
  parent[last] = { ...parent[last], metadata: pod.metadata, spec: pod.spec };
  return out;
}

function pathKeys(path) {
  const keys = [];
  for (const part of path.split('.')) {
    const m = /^([^[\]]*)((?:\[\d+\])*)$/.exec(part);
    if (m[1]) keys.push(m[1]);
    for (const idx of m[2].matchAll(/\[(\d+)\]/g)) keys.push(Number(idx[1]));
  }
  return keys.slice(1);
}

function simRow({ mesh, mode, answer, subject, injected }, doc, target) {
  const head = [
    h('th', { scope: 'row', 'data-label': 'Mesh' }, mesh.name),
    h('td', { 'data-label': 'Layout' }, mode.name),
  ];
  const row = (...cells) => h('tr', { dataset: { mesh: mesh.id, mode: mode.id } }, head, cells);
  if (answer.error) return row(h('td', { colspan: '4' }, `No plan: ${answer.error.message}`));
  if (!subject) return row(h('td', { colspan: '4' }, 'This subject has no pod spec to inject into.'));
  if (!injected?.added.length) return row(h('td', { colspan: '4' }, withCode(injected?.reason || 'The injector left the pod alone.')));
  const added = new Set(injected.added);
  const containers = subject.containers.filter((c) => added.has(c.name));
  const stops = subject.plan.stops.filter((s) => added.has(s.container));
  // What the policy left alone among the injected sidecars, by the role it gave each (an
  // injector's init containers run to completion and are not shown).
  const sidecars = new Set(containers.filter((c) => c.role.endsWith('sidecar')).map((c) => c.name));
  const skipped = subject.plan.skipped.filter((s) => sidecars.has(s.container));
  const diags = subject.diagnostics.filter((d) => added.has(d.container));
  return row(
    h('td', { 'data-label': 'Injected containers' }, h('ul', { class: 'evidence' }, containers.map((c) => h('li', { dataset: { container: c.name, role: c.role } }, h('code', {}, c.name), ` ${c.role}`)))),
    h('td', { 'data-label': 'What sidekill would do' },
      stops.map((s) => h('div', { dataset: { container: s.container, verdict: s.verdict } }, verdictBadge(s.verdict), ' stop ', h('code', {}, s.container),
        h('div', { class: 'small' }, s.steps.map((st) => (st.step === 'send' ? `${st.signalName} ${actionShell(st.action)}` : st.step === 'wait' ? `wait ${st.seconds} s` : `await ${st.container}`)).join(' → ')))),
      skipped.map((s) => h('div', { class: 'small' }, h('code', {}, s.container), ` left alone: ${s.reason}`)),
      !stops.length && !skipped.length ? h('span', { class: 'small muted' }, 'nothing to stop') : null),
    h('td', { 'data-label': 'Diagnostics' }, diags.length
      ? h('ul', { class: 'evidence' }, diags.map((d) => h('li', { title: `${d.message}\nFix: ${d.fix}`, dataset: { code: d.code } }, severityBadge(d.severity), ' ', h('code', {}, d.code))))
      : h('span', { class: 'small muted' }, 'none')),
    h('td', {}, h('button', {
      type: 'button',
      'aria-label': `Open the ${mesh.name} ${mode.id} injection of ${subjectTitle(target.subject.source)} as the input`,
      onclick: () => {
        const header = `# Simulated: ${mesh.name} ${mode.id} injection into ${subjectTitle(target.subject.source)}\n`;
        setInput(header + toYaml(injectedDocument(doc, subject.source, subject.injection.pod)));
        $('answer').focus();
      },
    }, 'Open as input')));
}

// ---------------------------------------------------------------- policy comparison

function compareModule(text) {
  $('cmp-module').textContent = text;
}

function compareStatus(text, kind) {
  const el = $('cmp-status');
  el.textContent = text;
  el.dataset.state = kind;
  el.className = `small ${kind === 'refused' ? 'error-text' : ''}`;
}

async function loadComparison(file) {
  state.comparison?.dispose();
  state.comparison = null;
  replace($('cmp-result'));
  compareModule('');
  $('cmp-unload').disabled = true;
  if (file.size > MAX_MODULE_BYTES) {
    compareStatus(`Refused ${file.name}: ${file.size} bytes is over the ${MAX_MODULE_BYTES}-byte limit.`, 'refused');
    return;
  }
  compareStatus(`Loading ${file.name}…`, 'loading');
  const bytes = new Uint8Array(await file.arrayBuffer());
  const module = new ComparisonModule({ timeoutMs: COMPARE_TIMEOUT_MS });
  try {
    const info = await module.load(bytes);
    state.comparison = module;
    state.comparisonName = file.name;
    $('cmp-unload').disabled = false;
    const who = info.policy ? `${info.policy.name} ${info.policy.version}` : 'a policy without sidekill_policy_info';
    compareModule(`Loaded ${file.name}: ${who}, ABI ${info.abi.major}.${info.abi.minor}, ${info.size} bytes.`);
    compareStatus(`Planning with ${file.name}…`, 'loaded');
    await runComparison();
  } catch (e) {
    module.dispose();
    compareStatus(`Refused ${file.name}: ${e.message}. The page goes on with its own policy.`, 'refused');
  }
}

async function runComparison() {
  const module = state.comparison;
  if (!module) return;
  const token = ++state.compareToken;
  const requests = state.results.map((r) => JSON.stringify(r.request));
  const mine = requests.map((r) => callJson('plan', r));
  let theirs;
  try {
    theirs = await module.plan(requests);
  } catch (e) {
    if (state.comparison === module) {
      state.comparison = null;
      $('cmp-unload').disabled = true;
      replace($('cmp-result'));
      compareModule('');
      compareStatus(`Stopped ${state.comparisonName}: ${e.message}. The page goes on with its own policy.`, 'refused');
    }
    return;
  }
  if (token !== state.compareToken || state.comparison !== module) return;
  const own = state.info ? `this page (${state.info.version})` : 'this page';
  const other = module.info.policy ? `${state.comparisonName} (${module.info.policy.version})` : state.comparisonName;
  let total = 0;
  let identical = 0;
  const sections = requests.map((_, i) => {
    const diff = diffAnswers(JSON.parse(mine[i]), JSON.parse(theirs[i]));
    total += diff.differences;
    const same = mine[i] === theirs[i];
    if (same) identical += 1;
    return renderDiff(`Document ${i + 1}`, own, other, diff, same);
  });
  replace($('cmp-result'), sections);
  const docs = requests.length;
  $('cmp-result').dataset.differences = String(total);
  compareStatus(total === 0
    ? `${state.comparisonName}: the same plans for ${docs} document${docs === 1 ? '' : 's'}${identical === docs ? ', byte for byte' : ''}.`
    : `${state.comparisonName}: ${total} difference${total === 1 ? '' : 's'} across ${docs} document${docs === 1 ? '' : 's'}, marked ≠ below.`, 'loaded');
}

function wireComparison() {
  $('cmp-file').addEventListener('change', (e) => {
    const file = e.target.files?.[0];
    if (file) loadComparison(file);
    e.target.value = '';
  });
  $('cmp-unload').addEventListener('click', () => {
    state.comparison?.dispose();
    state.comparison = null;
    replace($('cmp-result'));
    $('cmp-unload').disabled = true;
    compareModule('');
    compareStatus('Unloaded.', 'idle');
  });
}

// ---------------------------------------------------------------- input, examples, sharing

function setInput(text) {
  $('input').value = text;
  state.overlay = null;
  run();
}

async function readFile(file) {
  if (file.size > MAX_INPUT) {
    showInputError({ message: `${file.name} is ${file.size} bytes; the policy takes at most ${MAX_INPUT}` });
    return;
  }
  setInput(await file.text());
}

function wireInput() {
  let timer;
  $('input').addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(run, 120);
  });
  for (const id of ['fact-executor', 'fact-proxy']) $(id).addEventListener('change', () => run());
  for (const id of ['fact-cluster', 'fact-mains']) $(id).addEventListener('input', () => run());
  $('file').addEventListener('change', (e) => {
    const file = e.target.files?.[0];
    if (file) readFile(file);
  });
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('dragging');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('dragging'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('dragging');
    const file = e.dataTransfer?.files?.[0];
    if (file) readFile(file);
    else if (e.dataTransfer?.getData('text/plain')) setInput(e.dataTransfer.getData('text/plain'));
  });
  $('sim-run').addEventListener('click', () => {
    state.simulate = true;
    runSimulation();
  });
  $('sim-pod').addEventListener('change', () => { if (state.simulate) runSimulation(); });
  $('share').addEventListener('click', async () => {
    await updateHash(true);
    try {
      await navigator.clipboard.writeText(location.href);
      $('share-status').textContent = `Link copied (${location.href.length} characters).`;
    } catch {
      $('share-status').textContent = 'The link is in the address bar: copy it from there.';
    }
  });
}

let shareTimer;
function scheduleShare() {
  clearTimeout(shareTimer);
  shareTimer = setTimeout(() => updateHash(false), 400);
}

let lastHash = '';
async function updateHash(force) {
  const text = $('input').value;
  if (!force && text.length > MAX_SHARED) return;
  const hash = await encodeState({ text, facts: readFacts() });
  lastHash = hash;
  if (location.hash !== hash) history.replaceState(null, '', hash);
}

async function restoreFromHash() {
  try {
    const shared = await readSharedState(location.hash);
    if (!shared) return false;
    writeFacts(shared.facts);
    setInput(shared.text);
    return true;
  } catch (e) {
    $('share-status').textContent = `Could not read the link: ${e.message}`;
    return false;
  }
}

/** Settles once the policy module is loaded (or failed to): the examples load meanwhile, and a
 *  click on one waits for it. */
let policyLoaded = Promise.resolve();

async function loadExamples() {
  const box = $('examples');
  try {
    const examples = await examplesIndex;
    replace(box, examples.map((ex) => h('button', {
      type: 'button',
      title: ex.description,
      dataset: { example: ex.file },
      onclick: async () => {
        try {
          await policyLoaded;
        } catch {
          return; // the page already says why no module is loaded
        }
        writeFacts(ex.facts || {});
        setInput(await (await fetch(`examples/${ex.file}`)).text());
      },
    }, ex.title)));
    return examples;
  } catch (e) {
    replace(box, h('span', { class: 'small error-text' }, `Examples unavailable (${e.message}).`));
    return [];
  }
}

// ---------------------------------------------------------------- start

async function main() {
  // start.js has been downloading the module, the examples index and the first example since
  // the page started: the first plan needs all three.
  const examplesLoading = loadExamples();
  policyLoaded = init();
  try {
    await policyLoaded;
  } catch (e) {
    $('summary').textContent = `The policy module could not be loaded: ${e.message}`;
    $('policy-info').textContent = 'No policy.';
    return;
  }
  performance.mark('sidekill:policy-ready');
  const info = policyInfo();
  state.info = info.ok ?? null;
  $('policy-info').textContent = info.ok
    ? `Policy ${info.ok.name} ${info.ok.version} · presets ${info.ok.presetsHash} · features: ${info.ok.features.join(', ') || 'none'}`
    : `Policy info unavailable: ${info.error.message}`;
  const m = matrix();
  state.matrix = m.ok ?? null;
  wireInput();
  wireEditor();
  wireComparison();
  window.addEventListener('hashchange', () => {
    if (location.hash !== lastHash) restoreFromHash();
  });
  if (!(await restoreFromHash())) {
    const examples = await examplesLoading;
    if (examples[0] && $('input').value === '') {
      writeFacts(examples[0].facts || {});
      setInput((await firstExample) ?? await (await fetch(`examples/${examples[0].file}`)).text());
    } else {
      run();
    }
  }
  document.documentElement.dataset.ready = 'true';
}

main();
