// Generated from docs/ABI.md's "Exports" table (host/src/abi.rs, page_module): do not edit.
// Regenerate with `SIDEKILL_BLESS=1 cargo test -p sidekill --test it abi::`.
/** The exports every sidekill module has, with their kinds: the list the host checks too. */
export const REQUIRED = {
  memory: 'memory',
  sidekill_abi_major: 'function',
  sidekill_abi_minor: 'function',
  sidekill_alloc: 'function',
  sidekill_free: 'function',
  sidekill_reset: 'function',
  sidekill_result_len: 'function',
  sidekill_plan: 'function',
  sidekill_classify: 'function',
  sidekill_matrix: 'function',
  sidekill_policy_info: 'function',
};
