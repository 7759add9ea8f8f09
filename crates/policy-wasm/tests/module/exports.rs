//! The module's shape: no imports, exactly the exports of docs/ABI.md with their signatures,
//! and only the WebAssembly features every loader's runtime accepts.

use std::collections::BTreeMap;

use wasmparser::{ExternalKind, Parser, Payload, Validator, WasmFeatures};
use wasmtime::{ExternType, ValType};

use crate::{compiled, module_bytes, Policy};

/// The exports of ABI 1.0 with (params, results); all values are i32.
const EXPORTS: [(&str, usize, usize); 10] = [
    ("sidekill_abi_major", 0, 1),
    ("sidekill_abi_minor", 0, 1),
    ("sidekill_alloc", 1, 1),
    ("sidekill_free", 2, 0),
    ("sidekill_reset", 0, 0),
    ("sidekill_result_len", 0, 1),
    ("sidekill_plan", 2, 1),
    ("sidekill_classify", 2, 1),
    ("sidekill_matrix", 0, 1),
    ("sidekill_policy_info", 0, 1),
];

#[test]
fn has_no_imports() {
    let mut imports = Vec::new();
    for payload in Parser::new(0).parse_all(module_bytes()) {
        if let Payload::ImportSection(section) = payload.expect("module parses") {
            for import in section.into_imports() {
                let import = import.expect("import entry parses");
                imports.push(format!("{}::{}", import.module, import.name));
            }
        }
    }
    assert!(
        imports.is_empty(),
        "the module must instantiate with an empty import object; it imports {imports:?}"
    );
}

#[test]
fn exports_exactly_the_abi() {
    let mut exports = BTreeMap::new();
    for payload in Parser::new(0).parse_all(module_bytes()) {
        if let Payload::ExportSection(section) = payload.expect("module parses") {
            for export in section {
                let export = export.expect("export entry parses");
                exports.insert(export.name.to_owned(), export.kind);
            }
        }
    }
    let mut expected: BTreeMap<String, ExternalKind> = EXPORTS
        .iter()
        .map(|(name, _, _)| (name.to_string(), ExternalKind::Func))
        .collect();
    expected.insert("memory".into(), ExternalKind::Memory);
    assert_eq!(exports, expected, "exports differ from docs/ABI.md");

    let (_, module) = compiled();
    for (name, params, results) in EXPORTS {
        let Some(ExternType::Func(ty)) = module.get_export(name) else {
            panic!("`{name}` is not a function");
        };
        let i32s = |types: Vec<ValType>| types.iter().all(|t| matches!(t, ValType::I32));
        assert_eq!(ty.params().len(), params, "`{name}` parameters");
        assert_eq!(ty.results().len(), results, "`{name}` results");
        assert!(i32s(ty.params().collect()), "`{name}` takes i32s only");
        assert!(i32s(ty.results().collect()), "`{name}` returns i32s only");
    }
}

/// wazero, chicory, wasmtime-py and Node all accept WebAssembly 1.0 with these four
/// post-MVP features; reference types and multi-value are left out, so a runtime that lacks
/// them (or an old one) still loads the module.
#[test]
fn uses_only_widely_supported_features() {
    let features = WasmFeatures::WASM1
        | WasmFeatures::BULK_MEMORY
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::SATURATING_FLOAT_TO_INT;
    Validator::new_with_features(features)
        .validate_all(module_bytes())
        .unwrap_or_else(|e| panic!("the module needs a feature outside {features:?}: {e}"));
}

#[test]
fn reports_its_abi_version() {
    let (engine, module) = compiled();
    let mut store = wasmtime::Store::new(engine, ());
    let instance = wasmtime::Instance::new(&mut store, module, &[]).expect("instantiate");
    let version = |store: &mut wasmtime::Store<()>, name: &str| -> u32 {
        instance
            .get_typed_func::<(), u32>(&mut *store, name)
            .expect("export")
            .call(&mut *store, ())
            .expect("no trap")
    };
    assert_eq!(version(&mut store, "sidekill_abi_major"), 1);
    assert_eq!(version(&mut store, "sidekill_abi_minor"), 5);
}

#[test]
fn matrix_and_info_match_the_core() {
    let mut policy = Policy::new();
    for call in [sidekill_policy::Call::Matrix, sidekill_policy::Call::Info] {
        assert_eq!(
            policy.call(call, &[]),
            sidekill_policy::call(call, &[]),
            "{call:?}"
        );
    }
}
