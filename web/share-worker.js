// Reads a shared link (share.js decodeState) off the page's thread: the page ends this
// worker when it takes too long, so no link can freeze the tab (issue #18).
//
// Message in: {hash}.  Message out: {state} (null when the fragment holds none) | {error}.

import { decodeState } from './share.js';

self.onmessage = async ({ data }) => {
  try {
    self.postMessage({ state: await decodeState(data.hash) });
  } catch (e) {
    self.postMessage({ error: e.message });
  }
};
