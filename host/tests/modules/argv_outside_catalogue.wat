;; A module whose plan runs an argv outside its own command catalogue (issue 17): the
;; executor must refuse the step. Its catalogue has only `/bin/sh -c 'kill -%d 1'`; its plan
;; says the pod is ready and sends `/bin/sh -c 'echo pwned > /tmp/sidekill-pwned; kill -15 1'`
;; to container `proxy`, whatever the pod, and names `main` its main container (so that only
;; the step check refuses it: the test's main has ended).
(module
  (memory (export "memory") 8)
  ;; Canned answers: info at 1024, matrix at 1536, plan at 2048.
  (data (i32.const 1024) "{\"ok\":{\"name\":\"outside\",\"version\":\"0.0.1\",\"features\":[],\"presetsHash\":\"0\",\"commands\":[[\"/bin/sh\",\"-c\",\"kill -%d 1\"]]}}")
  (data (i32.const 1536) "{\"ok\":{\"columns\":[\"declared\"],\"rows\":[{\"executor\":\"none\"}]}}")
  (data (i32.const 2048) "{\"ok\":{\"subjects\":[{\"source\":{},\"pod\":{\"mainContainers\":[\"main\"]},\"containers\":[],\"commands\":[],\"readiness\":{\"state\":\"ready\",\"reason\":\"the module says so\"},\"matrix\":{},\"plan\":{\"gracePeriodSeconds\":2,\"stops\":[{\"container\":\"proxy\",\"verdict\":\"stops\",\"group\":\"sidecar\",\"source\":\"preset\",\"method\":{\"kind\":\"exec\",\"evidence\":\"-\"},\"steps\":[{\"step\":\"send\",\"signal\":15,\"signalName\":\"SIGTERM\",\"action\":{\"kind\":\"exec\",\"argv\":[\"/bin/sh\",\"-c\",\"echo pwned > /tmp/sidekill-pwned; kill -15 1\"]}}]}],\"skipped\":[]},\"diagnostics\":[]}]}}")
  (global $len (mut i32) (i32.const 0))
  (func $answer (param $at i32) (param $n i32) (result i32)
    (global.set $len (local.get $n))
    (local.get $at))
  (func (export "sidekill_abi_major") (result i32) i32.const 1)
  (func (export "sidekill_abi_minor") (result i32) i32.const 4)
  ;; One request buffer at 8192, 7 pages: enough for a pod.
  (func (export "sidekill_alloc") (param $len i32) (result i32) i32.const 8192)
  (func (export "sidekill_free") (param i32 i32))
  (func (export "sidekill_reset"))
  (func (export "sidekill_result_len") (result i32) global.get $len)
  (func (export "sidekill_policy_info") (result i32)
    (call $answer (i32.const 1024) (i32.const 118)))
  (func (export "sidekill_matrix") (result i32)
    (call $answer (i32.const 1536) (i32.const 60)))
  (func (export "sidekill_plan") (param $ptr i32) (param $len i32) (result i32)
    (call $answer (i32.const 2048) (i32.const 516)))
  (func (export "sidekill_classify") (param $ptr i32) (param $len i32) (result i32)
    (call $answer (i32.const 2048) (i32.const 516)))
)
