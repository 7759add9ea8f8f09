// How a page or a Node program uses the JavaScript build, written against its types: tsc
// must accept every line, and reject each line marked @ts-expect-error. Run by check-types.
import {
  callJson,
  classify,
  matrix,
  parseDocuments,
  plan,
  policyInfo,
} from "../../../dist/pkg-node/sidekill_policy";
import type {
  Action,
  Facts,
  JsonValue,
  PlanRequest,
  PolicyError,
  Report,
  Result,
  Step,
} from "../../../dist/pkg-node/sidekill_policy";

function unreachable(value: never): never {
  throw new Error(`unexpected ${JSON.stringify(value)}`);
}

function describeAction(action: Action): string {
  switch (action.kind) {
    case "exec":
      return action.argv.join(" ");
    case "http":
      return `${action.method} :${action.port}${action.path}`;
    case "image-swap":
      return `image of container ${action.containerIndex} -> ${action.image}`;
    case "ephemeral":
      return `ephemeral ${action.image} targeting ${action.targetContainerName}: ${action.argv.join(" ")}`;
    default:
      return unreachable(action);
  }
}

function describeStep(step: Step): string {
  switch (step.step) {
    case "await":
      return `await ${step.container}`;
    case "send":
      return `send ${step.signalName} (${step.signal}): ${describeAction(step.action)}`;
    case "wait":
      return `wait ${step.seconds}s`;
    default:
      return unreachable(step);
  }
}

function describeError(error: PolicyError): string {
  const at = error.line === undefined ? "" : ` at ${error.line}:${error.column ?? 0}`;
  return `${error.code}${at}: ${error.message}${error.path ? ` (${error.path})` : ""}`;
}

function show<T>(result: Result<T>, ok: (answer: T) => string): string {
  return result.error ? describeError(result.error) : ok(result.ok);
}

function describeReport(report: Report): string[] {
  const lines = [`${report.source.kind} ${report.source.name}: ${report.readiness.state}`];
  for (const stop of report.plan.stops) {
    lines.push(`${stop.container} (${stop.group}, ${stop.verdict})`);
    lines.push(...stop.steps.map(describeStep));
  }
  for (const d of report.diagnostics) {
    lines.push(`${d.severity} ${d.code}${d.container ? `@${d.container}` : ""}: ${d.fix}`);
  }
  return lines;
}

// A file pasted into the page: every document planned with the facts the page's form gives.
const facts: Facts = { executor: "emissary", clusterVersion: "1.31", podsProxy: true };
const documents = parseDocuments("kind: Pod\nspec:\n  containers: []\n");
if (documents.error) {
  console.log(describeError(documents.error));
} else {
  for (const object of documents.ok) {
    const request: PlanRequest = { object, facts };
    console.log(show(plan(request), (answer) => answer.subjects.flatMap(describeReport).join("\n")));
    console.log(show(classify(request), (answer) => answer.subjects.map((s) => s.pod.name).join()));
  }
}

// Objects written inline are JsonValues too.
const pod: JsonValue = { kind: "Pod", metadata: { name: "pi" }, spec: { containers: [] } };
plan({ object: pod });
plan({ object: pod, facts: null });
show(matrix(), (m) => m.rows.map((row) => `${row.executor}: ${row.injected.method}`).join());
show(policyInfo(), (info) => `${info.name} ${info.version} ${info.presetsHash}`);
const text: string = callJson("plan", JSON.stringify({ object: pod }));
console.log(text);

// @ts-expect-error: an executor outside the closed set
plan({ object: pod, facts: { executor: "containerd" } });
// @ts-expect-error: a request needs an object
plan({ facts });
// @ts-expect-error: an unknown call
callJson("planAll", "{}");
// @ts-expect-error: answers must be checked before use
plan({ object: pod }).ok.subjects;
