// What the first plan waits for, started as soon as this file runs: the policy module's
// download and compile, and the examples index and the first example. index.html runs this
// file as an async module script, so it runs as soon as it has arrived, while the page's
// other modules still download and before they are evaluated (a module runs only once its
// whole import graph has arrived); policy.js and app.js import the same promises. It imports
// nothing, so that nothing holds it back. Each promise is also given a handler here: a failure
// is reported by whoever awaits it, not as an unhandled rejection in the meantime.

const here = (path) => new URL(path, import.meta.url);

/** The page's policy module: a `WebAssembly.Module` compiled while it downloads when it is
 *  served as application/wasm (as `sidekill web` and the test server do), else its bytes,
 *  which `instantiate` (abi.js) compiles and, if they do not compile, says why. */
export function compilePolicy(source) {
  return fetch(source).then(async (response) => {
    if (!response.ok) throw new Error(`cannot load the policy module ${source}: HTTP ${response.status}`);
    if (WebAssembly.compileStreaming && response.headers.get('content-type')?.startsWith('application/wasm')) {
      try {
        return await WebAssembly.compileStreaming(response.clone());
      } catch {
        // Falls through to the bytes.
      }
    }
    return response.arrayBuffer();
  });
}

/** The policy module beside the page (`sidekill_policy.wasm`), compiling. */
export const policyModule = compilePolicy(here('./sidekill_policy.wasm'));

/** The examples index (examples/index.json): the list of `{file, title, description, facts?}`. */
export const examples = fetch(here('./examples/index.json')).then((response) => {
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
});

/** The first example's text, or null when there is none or it cannot be read. */
export const firstExample = examples.then((list) => (list[0]
  ? fetch(here(`./examples/${list[0].file}`)).then((r) => (r.ok ? r.text() : null))
  : null)).catch(() => null);

for (const promise of [policyModule, examples]) promise.catch(() => {});
