;; Issue 17, the whole-command budget: every plan answers an accepted 8 MiB envelope,
;; {"ok":{"subjects":[],"pad":"aaa..."}}: one string, so it passes the one-answer bounds
;; (16 MiB, 100,000 values). One is cheap; `sidekill plan` of 10,000 documents would hold
;; 80 GB of them without the command's answer budget (--answer-budget-mib).
(module
  (memory (export "memory") 130)
  (data (i32.const 1024) "{\"ok\":{\"name\":\"fat\",\"version\":\"0.0.1\",\"features\":[],\"presetsHash\":\"0\"}}")
  (data (i32.const 65536) "{\"ok\":{\"subjects\":[],\"pad\":\"")
  (data (i32.const 8454141) "\"}}")
  (global $len (mut i32) (i32.const 0))
  (func (export "sidekill_abi_major") (result i32) i32.const 1)
  (func (export "sidekill_abi_minor") (result i32) i32.const 0)
  (func (export "sidekill_alloc") (param $len i32) (result i32) i32.const 4096)
  (func (export "sidekill_free") (param i32 i32))
  (func (export "sidekill_reset"))
  (func (export "sidekill_result_len") (result i32) global.get $len)
  (func (export "sidekill_policy_info") (result i32)
    (global.set $len (i32.const 71)) (i32.const 1024))
  (func (export "sidekill_matrix") (result i32)
    (global.set $len (i32.const 71)) (i32.const 1024))
  ;; The pad: 8388577 bytes of `a` between the head and the tail, 8388608 in all.
  (func $plan (result i32)
    (memory.fill (i32.const 65564) (i32.const 97) (i32.const 8388577))
    (global.set $len (i32.const 8388608))
    (i32.const 65536))
  (func (export "sidekill_plan") (param i32 i32) (result i32) (call $plan))
  (func (export "sidekill_classify") (param i32 i32) (result i32) (call $plan))
)
