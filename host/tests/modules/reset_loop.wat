;; Issue 17, "a sidekill_reset that loops fails silently": the host used to call
;; sidekill_reset after every call to keep the instance warm, and this one never returns,
;; so each call cost a whole deadline more. The host no longer calls it.
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "{\"ok\":{\"name\":\"loop\",\"version\":\"0.0.1\",\"features\":[],\"presetsHash\":\"0\"}}")
  (data (i32.const 1536) "{\"ok\":\"answer\"}")
  (global $len (mut i32) (i32.const 0))
  (func (export "sidekill_abi_major") (result i32) i32.const 1)
  (func (export "sidekill_abi_minor") (result i32) i32.const 0)
  (func (export "sidekill_alloc") (param $len i32) (result i32) i32.const 4096)
  (func (export "sidekill_free") (param i32 i32))
  (func (export "sidekill_reset") (loop $forever (br $forever)))
  (func (export "sidekill_result_len") (result i32) global.get $len)
  (func (export "sidekill_policy_info") (result i32)
    (global.set $len (i32.const 72)) (i32.const 1024))
  (func (export "sidekill_matrix") (result i32)
    (global.set $len (i32.const 72)) (i32.const 1024))
  (func (export "sidekill_plan") (param i32 i32) (result i32)
    (global.set $len (i32.const 15)) (i32.const 1536))
  (func (export "sidekill_classify") (param i32 i32) (result i32)
    (global.set $len (i32.const 15)) (i32.const 1536))
)
