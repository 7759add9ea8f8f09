// The web package (ES module with an async init) has the same functions and types.
import init, { plan } from "../../../dist/pkg-web/sidekill_policy";
import type { Result, PlanResponse } from "../../../dist/pkg-web/sidekill_policy";

export async function planInPage(object: object): Promise<Result<PlanResponse>> {
  await init();
  return plan({ object: JSON.parse(JSON.stringify(object)) });
}
