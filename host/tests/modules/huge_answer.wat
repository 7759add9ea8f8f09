;; Issue 17, "a 16 MiB answer costs 687 MB RSS and 12 s CPU": every plan answers
;; {"ok":[0,0,0,...]}, just under the 16 MiB answer limit: about 8 million values, each
;; tens of bytes once parsed. The host refuses it after one pass over its bytes.
(module
  (memory (export "memory") 260)
  (data (i32.const 1024) "{\"ok\":{\"name\":\"huge\",\"version\":\"0.0.1\",\"features\":[],\"presetsHash\":\"0\"}}")
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
  ;; At 65536: `{"ok":[` then `0,` x 8,380,000 then `0]}`: 16,760,010 bytes.
  (func $plan (result i32) (local $at i32) (local $end i32)
    (i64.store (i32.const 65536) (i64.const 0x2c5b3a226b6f227b)) ;; {"ok":[,
    (local.set $at (i32.const 65543))
    (local.set $end (i32.add (i32.const 65543) (i32.const 16760000)))
    (loop $fill
      (i32.store16 (local.get $at) (i32.const 0x2c30)) ;; 0,
      (local.set $at (i32.add (local.get $at) (i32.const 2)))
      (br_if $fill (i32.lt_u (local.get $at) (local.get $end))))
    (i32.store8 (local.get $at) (i32.const 0x30))
    (i32.store16 (i32.add (local.get $at) (i32.const 1)) (i32.const 0x7d5d)) ;; ]}
    (global.set $len (i32.sub (i32.add (local.get $at) (i32.const 3)) (i32.const 65536)))
    (i32.const 65536))
  (func (export "sidekill_plan") (param i32 i32) (result i32) (call $plan))
  (func (export "sidekill_classify") (param i32 i32) (result i32) (call $plan))
)
