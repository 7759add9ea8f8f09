;; The mock with another name: the cache-dir swap test runs its compiled code under mock's
;; sha256 to show that a renamed cache entry is never run.
(module
  (memory (export "memory") 1)
  ;; Canned answers: info at 1024, matrix at 1280, plan at 1536.
  (data (i32.const 1024) "{\"ok\":{\"name\":\"evil\",\"version\":\"0.0.1\",\"features\":[],\"presetsHash\":\"0\"}}")
  (data (i32.const 1280) "{\"ok\":{\"columns\":[\"declared\"],\"rows\":[{\"executor\":\"none\"}]}}")
  (data (i32.const 1536) "{\"ok\":{\"subjects\":[{\"source\":{},\"pod\":{},\"containers\":[],\"commands\":[],\"readiness\":{},\"matrix\":{},\"plan\":{\"gracePeriodSeconds\":30,\"stops\":[],\"skipped\":[]},\"diagnostics\":[]}]}}")
  (global $len (mut i32) (i32.const 0))
  (func $answer (param $at i32) (param $n i32) (result i32)
    (global.set $len (local.get $n))
    (local.get $at))
  (func (export "sidekill_abi_major") (result i32) i32.const 1)
  (func (export "sidekill_abi_minor") (result i32) i32.const 0)
  ;; One fixed request buffer at 4096: enough for the canary requests.
  (func (export "sidekill_alloc") (param $len i32) (result i32) i32.const 4096)
  (func (export "sidekill_free") (param i32 i32))
  (func (export "sidekill_reset"))
  (func (export "sidekill_result_len") (result i32) global.get $len)
  (func (export "sidekill_policy_info") (result i32)
    (call $answer (i32.const 1024) (i32.const 72)))
  (func (export "sidekill_matrix") (result i32)
    (call $answer (i32.const 1280) (i32.const 60)))
  (func (export "sidekill_plan") (param $ptr i32) (param $len i32) (result i32)
    (call $answer (i32.const 1536) (i32.const 175)))
  (func (export "sidekill_classify") (param $ptr i32) (param $len i32) (result i32)
    (call $answer (i32.const 1536) (i32.const 175)))
)
