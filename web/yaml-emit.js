// A small YAML emitter for the "fixed YAML" the page hands back: JSON values in, block YAML
// out, quoting every string a YAML 1.1 or 1.2 reader could take for something else. It
// writes what kubectl and the policy's own reader (libyaml) read back to the same JSON;
// the tests check that round trip on every real-world fixture. Comments are not kept.

// Plain scalars that a YAML 1.1 or 1.2 (core schema) reader turns into null, a boolean,
// a number, a merge key or a timestamp: quoted.
const RESERVED = /^(?:~|null|true|false|y|yes|n|no|on|off|=|<<|\.inf|[-+]\.inf|\.nan)$/i;
const NUMBER_LIKE = /^[-+]?\.?[0-9]/;
// Characters that may not start a plain scalar; `-`, `?` and `:` may when a safe char follows.
const BAD_FIRST = /^[,[\]{}#&*!|>'"%@`]/;
const INDICATOR_THEN_SPACE = /^[-?:](?:\s|$)/;
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\ufeff]/;

/** Whether a string can be written without quotes. */
function plainOk(s) {
  return (
    s.length > 0 &&
    !RESERVED.test(s) &&
    !NUMBER_LIKE.test(s) &&
    !BAD_FIRST.test(s) &&
    !INDICATOR_THEN_SPACE.test(s) &&
    !/^(?:---|\.\.\.)/.test(s) &&
    !/^\s|\s$/.test(s) &&
    !/:(?:\s|$)|\s#|[\t\n\r]/.test(s) &&
    !CONTROL.test(s)
  );
}

/** A string as a one-line scalar: plain when safe, else single-quoted (which reads well for
 *  JSON in an annotation), else double-quoted with JSON's escapes (which are YAML's) when it
 *  holds a line break, a tab or a control character. */
export function scalarString(s) {
  if (plainOk(s)) return s;
  return /[\t\n\r]/.test(s) || CONTROL.test(s) ? JSON.stringify(s) : `'${s.replace(/'/g, "''")}'`;
}

/** A string in single quotes (YAML's only escape there is '' for '), for one-line values
 *  such as a kill-cmd annotation. */
export function singleQuoted(s) {
  if (/[\n\r]/.test(s) || CONTROL.test(s)) return JSON.stringify(s);
  return `'${s.replace(/'/g, "''")}'`;
}

function scalar(v) {
  if (v === null || v === undefined) return 'null';
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'number') return Number.isFinite(v) ? String(v) : 'null';
  return scalarString(String(v));
}

/** A multi-line string as a literal block (`|`), or null when only quotes read back exactly
 *  (control characters, a carriage return, trailing spaces on a line, no text at all). */
function literalBlock(s, indent) {
  if (!s.includes('\n') || /\r/.test(s) || CONTROL.test(s) || /[ \t]$/m.test(s)) return null;
  const body = s.replace(/\n+$/, '');
  if (body === '') return null;
  const trailing = s.length - body.length;
  const chomp = trailing === 0 ? '-' : trailing === 1 ? '' : '+';
  // The reader takes the block's indentation from its first non-empty line: say it when
  // that line starts with a space.
  const lead = /^\n*[ ]/.test(body) ? '2' : '';
  const lines = (trailing > 1 ? s.slice(0, -1) : body).split('\n');
  const pad = ' '.repeat(indent);
  return { header: `|${lead}${chomp}`, lines: lines.map((l) => (l === '' ? '' : pad + l)) };
}

const isMap = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const isEmpty = (v) => (Array.isArray(v) ? v.length === 0 : Object.keys(v).length === 0);

function emit(value, indent, out) {
  const pad = ' '.repeat(indent);
  if (Array.isArray(value)) {
    for (const item of value) {
      if ((isMap(item) || Array.isArray(item)) && !isEmpty(item)) {
        const inner = [];
        emit(item, indent + 2, inner);
        if (isMap(item)) {
          inner[0] = `${pad}- ${inner[0].slice(indent + 2)}`;
          out.push(...inner);
        } else {
          out.push(`${pad}-`, ...inner);
        }
      } else if (typeof item === 'string' && literalBlock(item, indent + 2)) {
        const block = literalBlock(item, indent + 2);
        out.push(`${pad}- ${block.header}`, ...block.lines);
      } else {
        out.push(`${pad}- ${Array.isArray(item) ? '[]' : isMap(item) ? '{}' : scalar(item)}`);
      }
    }
    return;
  }
  for (const [k, v] of Object.entries(value)) {
    const key = scalarString(k);
    if ((isMap(v) || Array.isArray(v)) && !isEmpty(v)) {
      out.push(`${pad}${key}:`);
      emit(v, indent + 2, out);
    } else if (typeof v === 'string' && literalBlock(v, indent + 2)) {
      const block = literalBlock(v, indent + 2);
      out.push(`${pad}${key}: ${block.header}`, ...block.lines);
    } else {
      out.push(`${pad}${key}: ${Array.isArray(v) ? '[]' : isMap(v) ? '{}' : scalar(v)}`);
    }
  }
}

/** One document as YAML text, ending with a newline. */
export function toYaml(value) {
  if (!isMap(value) && !Array.isArray(value)) return `${scalar(value)}\n`;
  if (isEmpty(value)) return Array.isArray(value) ? '[]\n' : '{}\n';
  const out = [];
  emit(value, 0, out);
  return `${out.join('\n')}\n`;
}

/** Several documents, separated by `---`. */
export function toYamlDocuments(values) {
  return values.map(toYaml).join('---\n');
}
