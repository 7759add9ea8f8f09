//! The JavaScript build (feature `js`): wasm-bindgen functions for the browser debugger page
//! and for Node, typed by `ts/types.d.ts`.
//!
//! Every function answers with the same envelope as the raw module, `{ok: ...}` or
//! `{error: {code, message, path?}}`, as a JavaScript object: bad input never throws, so a
//! page can show an error where it would show a plan. `callJson` is the raw ABI's call with
//! strings in and out; its answer is byte for byte the native core's.
//!
//! Requests cross the boundary as JSON text (`JSON.stringify` on the way in, `JSON.parse` on
//! the way out) rather than through serde-wasm-bindgen: the core reads JSON anyway, the module
//! needs neither `js-sys` nor a second serializer, and the page's answers are the same bytes
//! the raw module and the native core give.

use sidekill_policy::Call;
use wasm_bindgen::prelude::*;

// Appended to the generated `.d.ts`: the request and response types the signatures below name.
#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = include_str!("../ts/types.d.ts");

#[wasm_bindgen]
extern "C" {
    /// `JSON.parse`. Only ever given the core's own output, which is valid JSON.
    #[wasm_bindgen(js_namespace = JSON, js_name = parse)]
    fn json_parse(text: &str) -> JsValue;

    /// `JSON.stringify`: throws on a cycle or a BigInt, gives `undefined` for `undefined`,
    /// a function or a symbol.
    #[wasm_bindgen(catch, js_namespace = JSON, js_name = stringify)]
    fn json_stringify(value: &JsValue) -> Result<JsValue, JsValue>;

    /// `String(value)`: the text of a thrown error, without js-sys.
    #[wasm_bindgen(js_name = String)]
    fn js_string(value: &JsValue) -> String;
}

/// Plans every pod of a Kubernetes object: classification, kill commands, readiness, the
/// support-matrix row, the ordered stop steps and diagnostics.
///
/// Answers `{ok: PlanResponse}`, or `{error}` when the request cannot be planned at all (not a
/// supported kind, a missing or mistyped field: `path` names it). Never throws.
#[wasm_bindgen(unchecked_return_type = "Result<PlanResponse>")]
pub fn plan(#[wasm_bindgen(unchecked_param_type = "PlanRequest")] request: JsValue) -> JsValue {
    envelope(answer_value(Call::Plan, &request))
}

/// Classifies the containers of every pod of a Kubernetes object, with the evidence behind
/// each role. Answers as [`plan`] does, with a `ClassifyResponse`.
#[wasm_bindgen(unchecked_return_type = "Result<ClassifyResponse>")]
pub fn classify(
    #[wasm_bindgen(unchecked_param_type = "ClassifyRequest")] request: JsValue,
) -> JsValue {
    envelope(answer_value(Call::Classify, &request))
}

/// The support matrix: for each Argo executor and kind of sidecar, how it can be stopped.
#[wasm_bindgen(unchecked_return_type = "Result<Matrix>")]
pub fn matrix() -> JsValue {
    envelope(sidekill_policy::call(Call::Matrix, &[]))
}

/// The policy's name, version, features and preset hash.
#[wasm_bindgen(js_name = policyInfo, unchecked_return_type = "Result<PolicyInfo>")]
pub fn policy_info() -> JsValue {
    envelope(sidekill_policy::call(Call::Info, &[]))
}

/// Reads every document of a YAML or JSON text (`---` separates documents; empty documents
/// are skipped), for example a file pasted into the page, to pass to [`plan`] one by one.
///
/// Answers `{ok: JsonValue[]}`, or `{error}` with code `invalid_yaml` and the 1-based `line`
/// and `column` of the problem: a syntax error, a map key that is not a string, or nesting
/// deeper than 128 levels.
#[wasm_bindgen(js_name = parseDocuments, unchecked_return_type = "Result<JsonValue[]>")]
pub fn parse_documents(text: &str) -> JsValue {
    envelope(sidekill_policy::yaml::documents_envelope(text))
}

/// The raw ABI's call, with JSON text in and out: `call` is `plan`, `classify`, `matrix` or
/// `policyInfo`, `request` the request JSON (ignored by `matrix` and `policyInfo`).
///
/// The answer is the envelope's text, byte for byte what the raw module and the native core
/// give, for comparing runtimes. An unknown `call` is answered with an `invalid_field` error.
#[wasm_bindgen(js_name = callJson)]
pub fn call_json(
    #[wasm_bindgen(unchecked_param_type = "Call")] call: &str,
    request: &str,
) -> String {
    let answer = match call_named(call) {
        Some(which) => sidekill_policy::call(which, request.as_bytes()),
        None => sidekill_policy::error_envelope(
            "invalid_field",
            &format!("unknown call `{call}`: expected plan, classify, matrix or policyInfo"),
            Some("call"),
        ),
    };
    text(answer)
}

fn call_named(name: &str) -> Option<Call> {
    Some(match name {
        "plan" => Call::Plan,
        "classify" => Call::Classify,
        "matrix" => Call::Matrix,
        "policyInfo" => Call::Info,
        _ => return None,
    })
}

/// The answer to a request given as a JavaScript value.
fn answer_value(call: Call, request: &JsValue) -> Vec<u8> {
    match json_stringify(request) {
        Ok(json) => match json.as_string() {
            Some(json) => sidekill_policy::call(call, json.as_bytes()),
            None => sidekill_policy::error_envelope(
                "invalid_json",
                "the request is not a JSON value (undefined, a function or a symbol); expected {object, facts?}",
                None,
            ),
        },
        Err(thrown) => sidekill_policy::error_envelope(
            "invalid_json",
            &format!(
                "the request cannot be written as JSON ({}); expected {{object, facts?}}",
                js_string(&thrown)
            ),
            None,
        ),
    }
}

/// The envelope as a JavaScript object.
fn envelope(answer: Vec<u8>) -> JsValue {
    json_parse(&text(answer))
}

/// The envelope as a string. serde_json only writes UTF-8; the lossy fallback keeps `unwrap`
/// out and still gives valid JSON.
fn text(answer: Vec<u8>) -> String {
    String::from_utf8(answer).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}
