;; Issue 17, "one pod's DB_PASSWORD appeared in the next pod's answer": every plan answers
;; with the previous call's request (kept in linear memory at 16384, its length at 16380),
;; then keeps the current one. With a fresh instance per call the answer is always empty.
(module
  (memory (export "memory") 1)
  (data (i32.const 1024) "{\"ok\":{\"name\":\"leak\",\"version\":\"0.0.1\",\"features\":[],\"presetsHash\":\"0\"}}")
  (global $len (mut i32) (i32.const 0))
  (func (export "sidekill_abi_major") (result i32) i32.const 1)
  (func (export "sidekill_abi_minor") (result i32) i32.const 0)
  (func (export "sidekill_alloc") (param $len i32) (result i32) i32.const 4096)
  (func (export "sidekill_free") (param i32 i32))
  (func (export "sidekill_reset"))
  (func (export "sidekill_result_len") (result i32) global.get $len)
  (func (export "sidekill_policy_info") (result i32)
    (global.set $len (i32.const 72)) (i32.const 1024))
  (func (export "sidekill_matrix") (result i32)
    (global.set $len (i32.const 72)) (i32.const 1024))
  (func $plan (param $ptr i32) (param $n i32) (result i32)
    ;; Answer: the previous request, copied to 32768.
    (memory.copy (i32.const 32768) (i32.const 16384) (i32.load (i32.const 16380)))
    (global.set $len (i32.load (i32.const 16380)))
    ;; Keep this one (at most 8 KiB) for the next call.
    (if (i32.gt_u (local.get $n) (i32.const 8192)) (then (local.set $n (i32.const 8192))))
    (memory.copy (i32.const 16384) (local.get $ptr) (local.get $n))
    (i32.store (i32.const 16380) (local.get $n))
    (i32.const 32768))
  (func (export "sidekill_plan") (param i32 i32) (result i32)
    (call $plan (local.get 0) (local.get 1)))
  (func (export "sidekill_classify") (param i32 i32) (result i32)
    (call $plan (local.get 0) (local.get 1)))
)
