// A tiny DOM builder: h('p', {class: 'x', onclick: fn}, 'text', child). No framework.

/**
 * Makes an element. `attrs` keys: `class`, `text`, `on<event>` (listeners), `dataset`
 * (an object), `style` (an object of CSS properties), booleans (set when true), anything
 * else as an attribute. Children: nodes, strings (as text), arrays, null/false (skipped).
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') el.className = value;
    else if (key === 'text') el.textContent = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'style') Object.assign(el.style, value);
    else if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, '');
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** Text that screen readers read and sighted users do not see. */
export const srOnly = (text) => h('span', { class: 'sr-only' }, text);

/** A short-lived unique id for label/aria wiring. */
let counter = 0;
export const uid = (prefix = 'id') => `${prefix}-${++counter}`;
