// Policy comparison: a second raw-ABI module runs in a worker (compare-worker.js) with a
// time limit; its answers are set beside this page's, subject by subject, and the rows that
// differ are marked. The page only compares what the two modules answered.

import { h, srOnly } from './dom.js';
import { stepText } from './render.js';

/** Files over this size are not read. */
export const MAX_MODULE_BYTES = 64 * 1024 * 1024;

/** One loaded comparison module, in its own worker. */
export class ComparisonModule {
  /** @param {{timeoutMs?: number}} options how long a load or a batch of calls may take (default 4000 ms) */
  constructor({ timeoutMs = 4000 } = {}) {
    this.timeoutMs = timeoutMs;
    this.worker = null;
    this.info = null;
    this.pending = null;
    this.nextId = 1;
  }

  /** Loads `bytes`; resolves with the module's info, rejects with a reason to show. */
  load(bytes) {
    this.dispose();
    this.worker = new Worker(new URL('./compare-worker.js', import.meta.url), { type: 'module' });
    return this.#ask({ type: 'load', bytes }, [bytes.buffer], 'loading').then((reply) => {
      if (reply.type === 'refused') throw this.#fail(reply.message);
      this.info = reply.info;
      return reply.info;
    });
  }

  /** The module's answers (JSON text) to `requests`; rejects with a reason and unloads the
   *  module when it traps, answers garbage or runs out of time. */
  plan(requests) {
    if (!this.worker) return Promise.reject(new Error('no module loaded'));
    return this.#ask({ type: 'plan', id: this.nextId++, requests }, [], 'planning').then((reply) => {
      if (reply.type === 'failed') throw this.#fail(reply.message);
      return reply.answers;
    });
  }

  /** Ends the worker. */
  dispose() {
    this.worker?.terminate();
    this.worker = null;
    this.info = null;
  }

  #fail(message) {
    this.dispose();
    return new Error(message);
  }

  #ask(message, transfer, what) {
    const worker = this.worker;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        worker.onmessage = null;
        this.dispose();
        reject(new Error(`${what} took longer than ${this.timeoutMs / 1000} s, so the module was stopped (an endless loop?)`));
      }, this.timeoutMs);
      worker.onmessage = ({ data }) => {
        clearTimeout(timer);
        worker.onmessage = null;
        resolve(data);
      };
      worker.onerror = (e) => {
        clearTimeout(timer);
        e.preventDefault?.();
        reject(this.#fail(`the comparison worker failed: ${e.message || 'unknown error'}`));
      };
      worker.postMessage(message, transfer);
    });
  }
}

/** The rows of one subject to compare: [key, label, text]. */
function rows(subject) {
  const out = [];
  out.push(['readiness', 'readiness', subject.readiness?.state ?? '']);
  out.push(['executor', 'executor (matrix row)', subject.matrix?.executor ?? '']);
  for (const c of subject.containers || []) out.push([`role:${c.name}`, `role of ${c.name}`, c.role]);
  for (const s of subject.plan?.stops || []) {
    out.push([`stop:${s.container}`, `stop ${s.container}`, `${s.verdict} (${s.group}, ${s.source}): ${s.steps.map(stepText).join(' → ')}`]);
  }
  for (const s of subject.plan?.skipped || []) out.push([`skip:${s.container}`, `leave ${s.container}`, s.reason]);
  for (const d of subject.diagnostics || []) {
    const key = `diag:${d.code}@${d.container ?? ''}`;
    out.push([key, `${d.code}${d.container ? ` @ ${d.container}` : ''}`, d.severity]);
  }
  return out;
}

function label(source, i) {
  if (!source) return `pod ${i + 1}`;
  return `${source.kind} ${source.name}${source.template ? ` / template ${source.template}` : ''}`;
}

/**
 * Compares two plan answers (parsed envelopes) of the same request: a list of
 * {title, rows: [{label, left, right, differs}]} and the number of differing rows.
 */
export function diffAnswers(left, right) {
  const blocks = [];
  let differences = 0;
  if (left.error || right.error) {
    const l = left.error ? `error ${left.error.code}: ${left.error.message}` : 'a plan';
    const r = right.error ? `error ${right.error.code}: ${right.error.message}` : 'a plan';
    const differs = l !== r;
    differences += differs ? 1 : 0;
    return { blocks: [{ title: 'answer', rows: [{ label: 'answer', left: l, right: r, differs }] }], differences };
  }
  const ls = left.ok?.subjects || [];
  const rs = right.ok?.subjects || [];
  for (let i = 0; i < Math.max(ls.length, rs.length); i++) {
    const lrows = ls[i] ? rows(ls[i]) : [];
    const rrows = rs[i] ? rows(rs[i]) : [];
    const lmap = new Map(lrows.map(([k, lab, t]) => [k, [lab, t]]));
    const rmap = new Map(rrows.map(([k, lab, t]) => [k, [lab, t]]));
    const keys = [...new Set([...lrows.map((r) => r[0]), ...rrows.map((r) => r[0])])];
    const out = keys.map((k) => {
      const l = lmap.get(k);
      const r = rmap.get(k);
      const differs = !l || !r || l[1] !== r[1];
      differences += differs ? 1 : 0;
      return { label: (l || r)[0], left: l ? l[1] : '—', right: r ? r[1] : '—', differs };
    });
    blocks.push({ title: label(ls[i]?.source || rs[i]?.source, i), rows: out });
  }
  return { blocks, differences };
}

/** The side-by-side view of one document's two answers. */
export function renderDiff(title, leftName, rightName, diff, identical) {
  return h('section', { class: 'diff', 'aria-label': `comparison of ${title}` },
    h('h4', {}, title, ' ',
      identical
        ? h('span', { class: 'badge ok' }, 'same answer, byte for byte')
        : h('span', { class: diff.differences ? 'badge bad' : 'badge ok' },
          diff.differences ? `${diff.differences} difference${diff.differences === 1 ? '' : 's'}` : 'same plan (answers differ in other fields)')),
    diff.blocks.map((b) => h('div', { class: 'table-wrap' },
      h('table', { class: 'diff-table' },
        h('caption', {}, b.title),
        h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'what'), h('th', { scope: 'col' }, leftName), h('th', { scope: 'col' }, rightName))),
        h('tbody', {}, b.rows.map((r) => h('tr', { class: r.differs ? 'differs' : null, dataset: { differs: String(r.differs) } },
          h('th', { scope: 'row' }, r.differs ? h('span', { class: 'diff-mark', 'aria-hidden': 'true' }, '≠ ') : null, r.label, r.differs ? srOnly(' (differs)') : null),
          h('td', { 'data-label': leftName }, r.left),
          h('td', { 'data-label': rightName }, r.right))))))));
}

