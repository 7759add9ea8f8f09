// Renders the policy's answers (docs/schema.json, crates/policy-wasm/ts/types.d.ts). Nothing
// here decides anything: every role, verdict, step, matrix cell and fix comes from the
// module's answer; the page lays them out.

import { h, srOnly } from './dom.js';

const ROLE_LABEL = {
  'argo-init': 'Argo init',
  'argo-wait': 'Argo wait',
  'argo-supervisor': 'Argo supervisor',
  'argo-main': 'Argo main',
  'declared-sidecar': 'declared sidecar',
  'injected-sidecar': 'injected sidecar',
  'native-sidecar': 'native sidecar',
  init: 'init container',
  workload: 'workload',
};
const VERDICT_CLASS = { stops: 'ok', 'may-stop': 'warn', 'cannot-stop': 'bad' };
const SEVERITY_CLASS = { error: 'bad', warning: 'warn', info: 'info' };
const READY_CLASS = { ready: 'ok', 'not-ready': 'warn', unknown: 'muted' };

/** A step in the vectors' compact form (`send 15 exec sh -c kill -15 1`, `wait 30`,
 *  `await wait`): the data-step attribute the tests read. */
export function stepText(step) {
  if (step.step === 'await') return `await ${step.container}`;
  if (step.step === 'wait') return `wait ${step.seconds}`;
  const a = step.action;
  return a.kind === 'exec'
    ? `send ${step.signal} exec ${a.argv.join(' ')}`
    : `send ${step.signal} http ${a.method} ${a.port} ${a.path}`;
}

const shellWord = (w) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`);

/** An action as a person reads it: a shell-quoted argv, or an HTTP request. */
export function actionShell(action) {
  if (!action) return '';
  if (action.kind === 'exec') return action.argv.map(shellWord).join(' ');
  return `${action.method} :${action.port}${action.path} (through pods/proxy)`;
}

const badge = (cls, text, title) => h('span', { class: `badge ${cls}`, title }, text);
export const verdictBadge = (v) => badge(VERDICT_CLASS[v] || 'muted', v, `verdict: ${v}`);
export const severityBadge = (s) => badge(SEVERITY_CLASS[s] || 'muted', s);
const roleBadge = (r) => h('span', { class: `badge role role-${r}`, dataset: { role: r } }, ROLE_LABEL[r] || r);

export function subjectTitle(source) {
  return `${source.kind} ${source.name || '(no name)'}${source.template ? ` · template ${source.template}` : ''}`;
}

/** The termination plan as a timeline, one track per container, in the plan's order. */
function renderPlan(subject) {
  const { plan } = subject;
  const items = [];
  let lastGroup = null;
  plan.stops.forEach((stop, i) => {
    if (lastGroup === 'sidecar' && stop.group === 'proxy') {
      items.push(h('li', { class: 'group-break', 'aria-hidden': 'true' }, 'then the proxies, last'));
    }
    lastGroup = stop.group;
    let t = 0;
    const track = stop.steps.map((step) => {
      const data = { step: stepText(step) };
      if (step.step === 'await') {
        return h('li', { class: 'step await', dataset: data },
          h('span', { class: 'step-kind' }, 'await'), ' ', h('code', {}, step.container), ' exits');
      }
      if (step.step === 'wait') {
        const from = t;
        t += step.seconds;
        return h('li', { class: 'step wait', dataset: data, style: { flexGrow: String(Math.max(1, Math.min(step.seconds, 120))) } },
          h('span', { class: 'step-kind' }, `grace ${step.seconds} s`), srOnly(` from ${from} s to ${t} s`));
      }
      const cls = step.signalName === 'SIGKILL' ? 'sigkill' : 'sigterm';
      return h('li', { class: `step send ${cls}`, dataset: data },
        h('span', { class: 'at' }, `t = ${t} s`), ' ',
        h('span', { class: 'step-kind' }, `${step.signalName} (${step.signal})`), ' ',
        h('code', { class: 'action' }, actionShell(step.action)));
    });
    items.push(h('li', { class: 'stop', dataset: { container: stop.container, verdict: stop.verdict, group: stop.group } },
      h('div', { class: 'stop-head' },
        h('span', { class: 'order', 'aria-hidden': 'true' }, String(i + 1)),
        h('code', { class: 'name' }, stop.container), ' ',
        verdictBadge(stop.verdict), ' ',
        badge('muted', stop.group === 'proxy' ? 'proxy: stopped last' : 'sidecar'), ' ',
        badge('muted', `command: ${stop.source}`)),
      h('ol', { class: 'track', 'aria-label': `steps for ${stop.container}` }, track)));
  });
  return h('section', { class: 'plan' },
    h('h4', {}, 'Termination plan ', h('span', { class: 'muted small' }, `grace period ${plan.gracePeriodSeconds} s`)),
    plan.stops.length
      ? h('ol', { class: 'stops' }, items)
      : h('p', { class: 'muted' }, 'Nothing to stop.'),
    plan.skipped.length
      ? h('details', { class: 'skipped' },
        h('summary', {}, `Left alone (${plan.skipped.length})`),
        h('ul', {}, plan.skipped.map((s) => h('li', { dataset: { container: s.container } }, h('code', {}, s.container), ': ', s.reason))))
      : null);
}

export function renderDiagnostics(diagnostics, { heading = true } = {}) {
  const list = diagnostics.length
    ? h('ul', { class: 'diagnostics' }, diagnostics.map((d) => h('li', {
      class: `diagnostic ${SEVERITY_CLASS[d.severity] || ''}`,
      dataset: { code: d.code, severity: d.severity, container: d.container ?? '' },
    },
    h('div', {}, severityBadge(d.severity), ' ', h('code', {}, d.code), d.container ? [' on ', h('code', {}, d.container)] : null),
    h('p', { class: 'message' }, d.message),
    h('p', { class: 'fix' }, h('strong', {}, 'Fix: '), d.fix))))
    : h('p', { class: 'muted' }, 'No diagnostics.');
  return heading ? h('section', { class: 'diags' }, h('h4', {}, `Diagnostics (${diagnostics.length})`), list) : list;
}

function commandCell(command) {
  if (!command) return h('span', { class: 'muted' }, '—');
  return h('div', { class: 'command' },
    h('div', {}, badge('muted', command.source), command.preset ? [' ', h('span', { class: 'small muted', title: command.preset.source }, `preset ${command.preset.name}`)] : null),
    h('div', {}, h('span', { class: 'small' }, 'SIGTERM: '), h('code', {}, actionShell(command.sigterm))),
    command.sigkill ? h('div', {}, h('span', { class: 'small' }, 'SIGKILL: '), h('code', {}, actionShell(command.sigkill))) : null,
    h('div', { class: 'small muted' }, 'Argo would run: ',
      command.argoSigterm ? h('code', {}, command.argoSigterm.map(shellWord).join(' ')) : 'nothing'));
}

function renderContainers(subject) {
  const commands = new Map(subject.commands.map((c) => [c.container, c]));
  return h('section', { class: 'containers' },
    h('h4', {}, 'Containers'),
    h('div', { class: 'table-wrap' },
      h('table', { class: 'cards' },
        h('thead', {}, h('tr', {}, ['Container', 'Role', 'Evidence', 'Kill command'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, subject.containers.map((c) => h('tr', { dataset: { container: c.name, role: c.role } },
          h('th', { scope: 'row', 'data-label': 'Container' },
            h('code', {}, c.name),
            h('div', { class: 'small muted' }, c.list === 'initContainers' ? 'init container' : 'container', ' · ', c.image || '(no image)')),
          h('td', { 'data-label': 'Role' }, roleBadge(c.role),
            c.injector ? h('div', { class: 'small' }, `injector: ${c.injector}`) : null,
            c.software ? h('div', { class: 'small' }, `software: ${c.software}`) : null),
          h('td', { 'data-label': 'Evidence' }, h('ul', { class: 'evidence' }, c.evidence.map((e) => h('li', {}, h('code', { class: 'rule' }, e.rule), ' ', e.detail)))),
          h('td', { 'data-label': 'Kill command' }, commandCell(commands.get(c.name)))))))));
}

/** One pod of the answer. */
export function renderSubject(subject, id) {
  const { pod, readiness, matrix } = subject;
  return h('article', { class: 'subject', id, dataset: { executor: matrix.executor, ready: readiness.state } },
    h('h3', { tabindex: '-1' }, subjectTitle(subject.source)),
    h('dl', { class: 'facts-list' },
      h('div', {}, h('dt', {}, 'Pod'), h('dd', {}, pod.argo ? 'Argo workflow pod' : 'plain Kubernetes pod', h('span', { class: 'small muted' }, ` (${pod.evidence})`))),
      h('div', {}, h('dt', {}, 'Main containers'), h('dd', {}, pod.mainContainers.length ? pod.mainContainers.map((m, i) => [i ? ', ' : '', h('code', {}, m)]) : '—')),
      h('div', {}, h('dt', {}, 'Ready to stop'), h('dd', {}, badge(READY_CLASS[readiness.state] || 'muted', readiness.state), ' ', h('span', { class: 'small' }, readiness.reason))),
      h('div', {}, h('dt', {}, 'Support matrix'), h('dd', {}, h('a', { href: '#matrix' }, `row ${matrix.executor}`), ` · columns that apply: ${matrix.applies.join(', ') || 'none'}`))),
    renderPlan(subject),
    renderDiagnostics(subject.diagnostics),
    renderContainers(subject));
}

/** The support matrix, the rows of `used` executors highlighted with the columns that apply. */
export function renderMatrix(matrix, used) {
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'matrix' },
      h('caption', {}, 'How each kind of sidecar is stopped, per Argo executor (highlighted: the rows this input uses).'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Executor'), matrix.columns.map((c) => h('th', { scope: 'col' }, c)))),
      h('tbody', {}, matrix.rows.map((row) => {
        const applies = used.get(row.executor);
        return h('tr', { class: applies ? 'current' : null, dataset: { executor: row.executor }, 'aria-current': applies ? 'true' : null },
          h('th', { scope: 'row' }, h('code', {}, row.executor), applies ? h('span', { class: 'badge info' }, 'this input') : null,
            h('div', { class: 'small muted' }, row.versions)),
          matrix.columns.map((col) => h('td', { class: applies?.has(col) ? 'applies' : null, 'data-label': col },
            h('strong', {}, row[col].method), applies?.has(col) ? srOnly(' (applies)') : null,
            h('div', { class: 'small' }, row[col].path))));
      }))));
}
