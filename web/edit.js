// Edits of a parsed document for the kill-cmd editor: find a pod's metadata from the
// answer's `source.path`, set or remove an annotation, and write the result back into the
// input text (in place when a one-line change reads back right, else the whole text anew).

import { toYamlDocuments, singleQuoted } from './yaml-emit.js';

/** `object.spec.templates[3]` -> ['spec', 'templates', 3] (relative to the document). */
export function parsePath(path) {
  const keys = [];
  for (const part of path.split('.')) {
    const m = /^([^[\]]*)((?:\[\d+\])*)$/.exec(part);
    if (!m) throw new Error(`unreadable path ${path}`);
    if (m[1]) keys.push(m[1]);
    for (const idx of m[2].matchAll(/\[(\d+)\]/g)) keys.push(Number(idx[1]));
  }
  if (keys[0] !== 'object') throw new Error(`path ${path} does not start at object`);
  return keys.slice(1);
}

/** The value at `keys` in `doc`, or undefined. */
export function getAt(doc, keys) {
  let v = doc;
  for (const k of keys) {
    if (v === null || typeof v !== 'object') return undefined;
    v = v[k];
  }
  return v;
}

/** The annotations of the pod template at `podPath` (a subject's `source.path`). */
export function annotationsAt(doc, podPath) {
  const annotations = getAt(doc, [...parsePath(podPath), 'metadata', 'annotations']);
  return annotations && typeof annotations === 'object' ? annotations : {};
}

/**
 * A copy of `doc` with `key` set to `value` in the metadata of the pod template at
 * `podPath`, or removed when `value` is null.
 */
export function withAnnotation(doc, podPath, key, value) {
  const copy = structuredClone(doc);
  const keys = parsePath(podPath);
  let target = copy;
  for (const k of keys) {
    if (target[k] === null || typeof target[k] !== 'object') target[k] = {};
    target = target[k];
  }
  if (target.metadata === null || typeof target.metadata !== 'object') target.metadata = {};
  const meta = target.metadata;
  if (value === null) {
    if (meta.annotations && typeof meta.annotations === 'object') {
      delete meta.annotations[key];
      if (Object.keys(meta.annotations).length === 0) delete meta.annotations;
    }
  } else {
    if (meta.annotations === null || typeof meta.annotations !== 'object') meta.annotations = {};
    meta.annotations[key] = value;
  }
  return copy;
}

/** The annotation as a YAML line, ready to paste under `annotations:`. */
export function annotationLine(key, value) {
  return `${key}: ${singleQuoted(value)}`;
}

const canonical = (v) => JSON.stringify(sortKeys(v));
function sortKeys(v) {
  if (Array.isArray(v)) return v.map(sortKeys);
  if (v === null || typeof v !== 'object') return v;
  return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys(v[k])]));
}
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * The input text with `docs` (the edited documents) written back. Tries a one-line edit of
 * the annotation's existing line first, keeping comments and layout, and keeps it only when
 * `parse` reads it back as `docs`. Otherwise writes every document anew: JSON for a JSON
 * input, YAML for the rest. Answers `{text, inPlace}`.
 */
export function writeBack(text, docs, key, value, parse) {
  const same = (candidate) => {
    const parsed = parse(candidate);
    return parsed.ok && canonical(parsed.ok) === canonical(docs);
  };
  const json = /^\s*[[{]/.test(text);
  const line = new RegExp(`^([ \\t]*(?:- )?)(["']?)${escapeRe(key)}\\2([ \\t]*:[ \\t]*)(.*?)(,?)[ \\t]*$`, 'gm');
  const hits = [...text.matchAll(line)];
  if (hits.length === 1) {
    const [whole, indent, quote, colon, , comma] = hits[0];
    const start = hits[0].index;
    // JSON stays JSON: a JSON string, and the comma after it.
    const written = json ? `${JSON.stringify(value)}${comma}` : singleQuoted(value);
    const candidate = value === null
      ? text.slice(0, start) + text.slice(start + whole.length).replace(/^\r?\n/, '')
      : text.slice(0, start) + `${indent}${quote}${key}${quote}${colon}${written}` + text.slice(start + whole.length);
    if (same(candidate)) return { text: candidate, inPlace: true };
  }
  if (json && docs.length === 1) {
    return { text: `${JSON.stringify(docs[0], null, 2)}\n`, inPlace: false };
  }
  return { text: toYamlDocuments(docs), inPlace: false };
}
