// Types of sidekill's JavaScript build (feature `js` of crates/policy-wasm).
// wasm-bindgen appends this file to the generated `sidekill_policy_wasm.d.ts`; the functions'
// signatures there refer to these names. Keep it in step with the serde forms in
// crates/policy: ts/check-types runs `tsc` on real answers of the module, so a drift fails.

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/**
 * Every function answers with this envelope, as the raw module does: `{ok}` with the answer, or
 * `{error}`. Bad input never throws.
 */
export type Result<T> = { ok: T; error?: never } | { ok?: never; error: PolicyError };

/** The calls `callJson` knows, by their names in the raw ABI (without the `sidekill_` prefix). */
export type Call = "plan" | "classify" | "matrix" | "policyInfo";

/** Why a call has no answer. */
export interface PolicyError {
  /** Stable, machine-readable: see the error table of docs/ABI.md. */
  code: ErrorCode;
  /** What is wrong, for people; names the field. */
  message: string;
  /** JSON path of the field the error is about, such as `object.spec.containers[0].name`. */
  path?: string;
  /** `parseDocuments` only: 1-based line of a YAML or JSON syntax error. */
  line?: number;
  /** `parseDocuments` only: 1-based column of a YAML or JSON syntax error. */
  column?: number;
}

/** The error codes of docs/ABI.md. `request_too_large` and `bad_pointer` only come from the raw module. */
export type ErrorCode =
  | "invalid_utf8"
  | "invalid_json"
  | "invalid_yaml"
  | "missing_field"
  | "invalid_field"
  | "unsupported_kind"
  | "too_deep"
  | "request_too_large"
  | "bad_pointer"
  | "internal";

/** A request to `plan` or `classify`. */
export interface PlanRequest {
  /**
   * A Kubernetes object: Pod, Job, CronJob, Deployment, ReplicaSet, StatefulSet, DaemonSet,
   * Argo Workflow, WorkflowTemplate, ClusterWorkflowTemplate, or a `List` of them. Anything else
   * is answered with an error naming the field.
   */
  object: JsonValue;
  /** What the host knows and the object does not say. */
  facts?: Facts | null;
}

/** `classify` takes the same request as `plan`. */
export type ClassifyRequest = PlanRequest;

/** Facts from the host. Every field is optional. */
export interface Facts {
  /** The Argo executor that runs the pod; detected from the pod when absent. */
  executor?: Executor | null;
  /** The cluster's Kubernetes version, such as `"1.31"` or `"v1.31.2"`. */
  clusterVersion?: string | null;
  /** Whether the host may use the `pods/proxy` subresource (HTTP stop steps). Default false. */
  podsProxy?: boolean | null;
  /** Names of the main containers, overriding detection. In a pod no Argo runs, every other
   * regular container no injector marked becomes a declared sidecar. */
  mainContainers?: string[] | null;
  /** Names of containers declared sidecars by the host (`--sidecar`). ABI 1.2. */
  sidecars?: string[] | null;
  /** Stop methods the host may use besides `pods/exec`, with their images. ABI 1.3. Absent or
   * not allowed: not used. An allowed method without `image` is a `missing_field` error. */
  stopMethods?: {
    /** Image swap to the nop image: needs patch on pods. */
    imageSwap?: { allowed: boolean; image?: string } | null;
    /** The ephemeral quitter: opt-in, needs pods/ephemeralcontainers. */
    ephemeral?: { allowed: boolean; image?: string } | null;
  } | null;
  /** Injections to simulate before planning (the namespace is injected), applied in the order
   * istio, linkerd, kuma, vault. `native` defaults to false (classic); a pod's own annotation
   * overrides it. ABI 1.4. */
  inject?: {
    istio?: { native?: boolean | null } | null;
    linkerd?: { native?: boolean | null } | null;
    kuma?: { native?: boolean | null } | null;
    vault?: { native?: boolean | null } | null;
  } | null;
}

/** An Argo executor, or `none` for a pod no Argo executor runs. */
export type Executor = "emissary" | "docker" | "k8sapi" | "kubelet" | "pns" | "none";

/** The `plan` answer: one report per pod the object stands for. */
export interface PlanResponse {
  subjects: Report[];
}

/** The `classify` answer: one classification per pod the object stands for. */
export interface ClassifyResponse {
  subjects: Classification[];
}

/** Where a planned pod comes from. */
export interface Source {
  kind: string;
  /** The object's name (or `generateName`); empty when it has neither. */
  name: string;
  namespace?: string;
  /** For a Workflow: the template this pod runs. */
  template?: string;
  /** JSON path of the pod spec inside the request. */
  path: string;
}

/** A summary of one pod. */
export interface PodSummary {
  name: string;
  namespace?: string;
  /** Whether Argo runs the pod. */
  argo: boolean;
  /** Why it is or is not an Argo pod. */
  evidence: string;
  mainContainers: string[];
  /** The restart policy that applies and where it comes from. ABI 1.2. */
  restartPolicy: { policy: RestartPolicy | null; evidence: string };
  /** What runs the pod. ABI 1.2. */
  owner: { kind: "argo-workflow" | "job" | "long-running" | "pod"; evidence: string };
}

/** A pod's `restartPolicy`. */
export type RestartPolicy = "Never" | "OnFailure" | "Always";

/** An exit code, or `"unknown"` when the policy cannot know it. */
export type ExitCode = number | "unknown";

/** The exit code a stop step is expected to make the container end with, and why. ABI 1.2. */
export interface ExpectedExit {
  code: ExitCode;
  why: string;
}

/** A predicted end of a pod or an Argo step. */
export interface Prediction {
  phase: "Succeeded" | "Failed" | "NeverCompletes" | "Unknown";
  why: string;
}

/** The predicted end of one container. */
export interface ContainerOutcome {
  container: string;
  exitCode: ExitCode;
  result: "main" | "succeeds" | "fails" | "restarted" | "keeps-running" | "not-counted" | "unknown";
  why: string;
}

/** The predicted end of the pod once the plan has run. ABI 1.2. */
export interface Outcome {
  pod: Prediction;
  /** Argo pods only: the step's result (`inferFailedReason`). */
  argoStep?: Prediction;
  containers: ContainerOutcome[];
}

/** What a container is, as far as stopping it goes. */
export type Role =
  | "argo-init"
  | "argo-wait"
  | "argo-supervisor"
  | "argo-main"
  | "declared-sidecar"
  | "injected-sidecar"
  | "native-sidecar"
  | "init"
  | "workload";

/** Which injector added a container. */
export type Injector = "istio" | "linkerd" | "kuma" | "vault" | "cloud-sql-proxy" | "unknown";

/** Software a container is known to run. */
export type Software =
  | "istio-proxy"
  | "linkerd-proxy"
  | "linkerd-debug"
  | "kuma-dp"
  | "vault-agent"
  | "cloud-sql-proxy-v2"
  | "cloud-sql-proxy-v1"
  | "argoexec";

/** One reason behind a classification. */
export interface Evidence {
  /** Stable name of the rule that matched. */
  rule: string;
  /** What was seen. */
  detail: string;
}

/** A classified container. */
export interface Classified {
  name: string;
  list: "containers" | "initContainers";
  role: Role;
  injector?: Injector;
  software?: Software;
  image: string;
  evidence: Evidence[];
}

/** The classification of one pod. */
export interface Classification {
  source: Source;
  pod: PodSummary;
  containers: Classified[];
}

/** How a stop request reaches a sidecar. `%d` in an argv stands for the signal number. */
export type Action =
  | { kind: "exec"; argv: string[] }
  /** Not produced from ABI 1.3: no known quit endpoint answers a caller outside the pod. */
  | { kind: "http"; method: string; port: number; path: string }
  /** ABI 1.3: JSON-patch `spec.containers[containerIndex].image` to the nop image. */
  | { kind: "image-swap"; containerIndex: number; image: string }
  /** ABI 1.3: add an ephemeral container running `argv` with `targetContainerName`. */
  | { kind: "ephemeral"; targetContainerName: string; image: string; argv: string[]; runAsUser?: number };

/** Where a kill command comes from. `image-swap` and `quitter` (ABI 1.3) only on stops. */
export type CommandSource = "annotation" | "preset" | "argoexec" | "default" | "image-swap" | "quitter";

/** An HTTP endpoint a stop request calls from inside the pod, and who may reach it. ABI 1.3. */
export interface Endpoint {
  method: string;
  host: string;
  port: number;
  path: string;
  /** Only a caller on the pod's loopback reaches it: pods/proxy cannot. */
  loopbackOnly: boolean;
  /** Why, with the source of the access rule. */
  access: string;
}

/** A preset stop command for known software, with the source that documents it. */
export interface Preset {
  name: string;
  source: string;
  /** The command inside the container (absent only when the image has no client; ABI 1.3). */
  action?: Action;
  /** ABI 1.3. */
  endpoint?: Endpoint;
}

/** How one container would be signalled. */
export interface KillCommand {
  container: string;
  source: CommandSource;
  preset?: Preset;
  sigterm: Action;
  /** Absent when the grace period is 0. */
  sigkill?: Action;
  /** What Argo itself would run for SIGTERM; `null` when Argo runs nothing. */
  argoSigterm: string[] | null;
}

/** Whether the sidecars should be stopped now, and why. */
export interface Readiness {
  state: "ready" | "not-ready" | "unknown";
  reason: string;
}

/** A column of the support matrix. */
export type MatrixColumn = "declared" | "injected" | "native";

/** How a kind of sidecar can be stopped. */
export type Method = "Any" | "Shell" | "KubectlExec" | "NoneNeeded" | "NotApplicable" | "Unsupported";

/** One cell of the support matrix. */
export interface MatrixCell {
  method: Method;
  /** The command, endpoint or component that does it. */
  path: string;
}

/** One executor's row of the support matrix. */
export interface MatrixRow {
  executor: Executor;
  /** The Argo versions that have it. */
  versions: string;
  declared: MatrixCell;
  injected: MatrixCell;
  native: MatrixCell;
}

/** The support matrix, the `matrix` answer. */
export interface Matrix {
  columns: MatrixColumn[];
  rows: MatrixRow[];
}

/** The matrix row that applies to one pod. */
export interface MatrixUse {
  executor: Executor;
  row: MatrixRow;
  /** The columns this pod has containers in. */
  applies: MatrixColumn[];
}

/** One step of a container's stop. */
export type Step =
  | { step: "await"; container: string }
  | { step: "send"; signal: number; signalName: string; action: Action; expectedExit: ExpectedExit; endpoint?: Endpoint }
  | { step: "wait"; seconds: number };

/** The stop of one container. */
export interface ContainerStop {
  container: string;
  /** Proxies are stopped after the other sidecars. */
  group: "sidecar" | "proxy";
  source: CommandSource;
  /** The stop method and why it was chosen. ABI 1.3. */
  method: { kind: "exec" | "image-swap" | "ephemeral" | "none"; evidence: string };
  verdict: "stops" | "may-stop" | "cannot-stop";
  /** Empty when no method the host may use can stop it (`method.kind` is `none`). */
  steps: Step[];
}

/** A container the plan leaves alone, and why. */
export interface Skip {
  container: string;
  reason: string;
}

/** The termination plan of one pod. */
export interface Plan {
  gracePeriodSeconds: number;
  /** In order. */
  stops: ContainerStop[];
  skipped: Skip[];
  /** ABI 1.2. */
  outcome: Outcome;
}

/** A stable diagnostic code. */
export type DiagnosticCode =
  | "kill-cmd-not-json"
  | "kill-cmd-not-array"
  | "kill-cmd-empty"
  | "kill-cmd-not-string"
  | "kill-cmd-empty-argument"
  | "kill-cmd-too-long"
  | "kill-cmd-second-signal-verb"
  | "kill-cmd-other-verb"
  | "kill-cmd-unknown-container"
  | "kill-cmd-invalid-suffix"
  | "kill-cmd-no-signal"
  | "kill-cmd-not-applicable"
  | "no-shell"
  | "non-root"
  | "shared-process-namespace"
  | "pid1-ignores-sigkill"
  | "sigterm-needs-handler"
  | "pre-stop-not-run"
  | "stop-signal-not-used"
  | "preset-needs-feature"
  | "pods-proxy-not-allowed"
  | "preset-command-overridden"
  | "native-sidecar"
  | "native-sidecar-unsupported"
  | "proxy-is-workload"
  | "proxy-after-wait"
  | "no-grace-period"
  | "not-ready"
  | "unsupported"
  | "unknown-sidecar"
  | "declared-container-missing"
  | "declaration-conflict"
  | "pod-fails-on-exit"
  | "sidecar-restarted"
  | "argo-step-fails-on-exit"
  | "long-running"
  | "exit-zero-preferred"
  | "loopback-only"
  | "image-swap"
  | "image-swap-refused"
  | "ephemeral-quitter"
  | "quitter-not-allowed"
  | "will-be-injected"
  | "injection-simulated";

/** What will go wrong (or differently) when a plan runs, and how to fix it. */
export interface Diagnostic {
  code: DiagnosticCode;
  severity: "error" | "warning" | "info";
  container?: string;
  message: string;
  fix: string;
}

/** Everything the policy decides about one pod. */
export interface Report {
  source: Source;
  pod: PodSummary;
  containers: Classified[];
  commands: KillCommand[];
  readiness: Readiness;
  matrix: MatrixUse;
  plan: Plan;
  diagnostics: Diagnostic[];
  /** The simulated injections and the injected pod this report is of; only with
   * `facts.inject`. ABI 1.4. */
  injection?: Injection;
}

/** What `facts.inject` did to one pod. ABI 1.4. */
export interface Injection {
  injected: {
    injector: "istio" | "linkerd" | "kuma" | "vault";
    native: boolean;
    /** The containers added, in order; empty when the injector left the pod alone. */
    added: string[];
    /** What it did, or why it left the pod alone. */
    reason: string;
  }[];
  /** The injected pod, `{metadata, spec}`. */
  pod: { metadata: Record<string, unknown>; spec: Record<string, unknown> };
}

/** The policy's identity, the `policyInfo` answer. */
export interface PolicyInfo {
  name: string;
  version: string;
  features: string[];
  /** FNV-1a 64 of the built-in presets, in hex: changes when a preset does. */
  presetsHash: string;
  /** Every path at which the nop image must hold the nop binary; the first is its
   * ENTRYPOINT. ABI 1.3. */
  nopPaths: string[];
  /** The PATH the nop image must set. ABI 1.3. */
  nopPathEnv: string;
  /** Where the quitter image holds the quitter binary, its ENTRYPOINT. ABI 1.3. */
  quitterPath: string;
  /** The command catalogue: every argv a plan may contain besides the pod's own kill-cmd
   * annotation, as templates (`%d` the step's signal; whole-element holes `{port}`,
   * `{loopback}`, `{url}`, `{path}`, `{method}`, `{name}`). ABI 1.4. */
  commands: string[][];
  /** The roles of Argo's own containers, which sidekill never signals. ABI 1.5. */
  argoOwnRoles: Role[];
  /** The annotation prefix of a pod's own kill command: the key is this prefix followed by
   * the container's name. ABI 1.5. */
  killCmdPrefix: string;
}
