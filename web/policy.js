// The page's policy: the raw module `sidekill web` serves beside the page
// (`sidekill_policy.wasm`, the very module the sidekill binary embeds), through the raw ABI
// (abi.js). The functions answer as the JavaScript build's do (crates/policy-wasm/src/js.rs):
// an `{ok}` or `{error}` envelope, never a throw for bad input.

import { call, instantiate, readAnswer } from './abi.js';
import { compilePolicy, policyModule } from './start.js';

let abi = null;

/** Loads the module: by default `sidekill_policy.wasm` beside this file, which start.js began
 *  to download and compile as the page started; else `source`. */
export default async function init(source) {
  const loaded = await instantiate(await (source === undefined ? policyModule : compilePolicy(source)));
  if (loaded.names.get('sidekill_documents') !== 'function') {
    throw new Error('the policy module has no sidekill_documents export, which the page reads YAML with: it needs a build with the yaml feature (docs/ABI.md, "Optional exports")');
  }
  abi = loaded.exports;
}

const EXPORTS = { plan: 'sidekill_plan', classify: 'sidekill_classify', matrix: 'sidekill_matrix', policyInfo: 'sidekill_policy_info' };

function loaded() {
  if (!abi) throw new Error('the policy module is not loaded: await init() first');
  return abi;
}

function errorText(code, message, path) {
  return JSON.stringify({ error: path ? { code, message, path } : { code, message } });
}

/**
 * The raw ABI's call with strings in and out: the answer's text, byte for byte the native
 * core's. `name` is plan, classify, matrix or policyInfo.
 */
export function callJson(name, request) {
  const module = loaded();
  const exported = EXPORTS[name];
  if (!exported) return errorText('invalid_field', `unknown call \`${name}\`: expected plan, classify, matrix or policyInfo`, 'call');
  if (name === 'matrix' || name === 'policyInfo') return readAnswer(module, module[exported](), exported).text;
  return call(module, exported, request);
}

function callValue(name, request) {
  let text;
  try {
    text = JSON.stringify(request);
  } catch (e) {
    return { error: { code: 'invalid_json', message: `the request cannot be written as JSON (${e.message}); expected {object, facts?}` } };
  }
  if (typeof text !== 'string') {
    return { error: { code: 'invalid_json', message: 'the request is not a JSON value (undefined, a function or a symbol); expected {object, facts?}' } };
  }
  return JSON.parse(callJson(name, text));
}

/** Plans every pod of a Kubernetes object (a PlanRequest); `{ok: PlanResponse}` or `{error}`. */
export const plan = (request) => callValue('plan', request);
/** Classifies the containers of every pod; `{ok: ClassifyResponse}` or `{error}`. */
export const classify = (request) => callValue('classify', request);
/** The support matrix. */
export const matrix = () => JSON.parse(callJson('matrix', ''));
/** The policy's name, version, features and preset hash. */
export const policyInfo = () => JSON.parse(callJson('policyInfo', ''));
/** Every document of a YAML or JSON text; `{ok: [document]}` or `{error}` with line and column. */
export const parseDocuments = (text) => JSON.parse(call(loaded(), 'sidekill_documents', String(text)));
