// Runs a second policy module, loaded by the user, through the raw ABI of docs/ABI.md, in
// a worker: the page stays responsive whatever the module does, and the page ends this
// worker when a call takes too long (an infinite loop). The module gets an empty import
// object; a module that wants imports, lacks the ABI's exports, has another ABI major
// version, traps or answers something other than a JSON envelope is refused with a reason.
//
// Messages in:  {type: 'load', bytes}  then  {type: 'plan', id, requests: [string]}
// Messages out: {type: 'loaded', info} | {type: 'refused', message}
//               {type: 'answers', id, answers: [string]} | {type: 'failed', id, message}

import { call, instantiate, readAnswer } from './abi.js';

let abi = null;

async function load(bytes) {
  const loaded = await instantiate(bytes);
  abi = loaded.exports;
  let policy = null;
  if (loaded.names.get('sidekill_policy_info') === 'function') {
    const info = readAnswer(abi, abi.sidekill_policy_info(), 'sidekill_policy_info').value;
    policy = info.ok ?? null;
  }
  return { abi: { major: loaded.major, minor: loaded.minor }, policy, size: bytes.byteLength };
}

self.onmessage = async ({ data }) => {
  if (data.type === 'load') {
    try {
      self.postMessage({ type: 'loaded', info: await load(data.bytes) });
    } catch (e) {
      abi = null;
      self.postMessage({ type: 'refused', message: e.message });
    }
  } else if (data.type === 'plan') {
    try {
      if (!abi) throw new Error('no module loaded');
      const answers = data.requests.map((r) => call(abi, 'sidekill_plan', r));
      self.postMessage({ type: 'answers', id: data.id, answers });
    } catch (e) {
      // A trap leaves the instance unusable (docs/ABI.md): drop it.
      abi = null;
      const trap = e instanceof WebAssembly.RuntimeError ? `the module trapped (${e.message})` : e.message;
      self.postMessage({ type: 'failed', id: data.id, message: trap });
    }
  }
};
