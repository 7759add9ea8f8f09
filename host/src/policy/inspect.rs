//! What a module imports and exports, and `sidekill policy inspect`'s view of a module
//! whether or not it loads.

use std::time::Duration;

use wasmtime::{ExternType, Module};

use super::{Policy, ABI_EXPORTS};
use crate::digest::Sha256;
use crate::error::LoadError;
use crate::error::{Error, Import, Result};
use crate::runtime::Runtime;

/// Every import of a module.
pub fn imports(module: &Module) -> Vec<Import> {
    module
        .imports()
        .map(|import| Import {
            module: import.module().to_string(),
            name: import.name().to_string(),
            kind: kind(&import.ty()),
        })
        .collect()
}

fn kind(ty: &ExternType) -> &'static str {
    match ty {
        ExternType::Func(_) => "func",
        ExternType::Memory(_) => "memory",
        ExternType::Table(_) => "table",
        ExternType::Global(_) => "global",
        ExternType::Tag(_) => "tag",
    }
}

/// An export's type, as `func(i32, i32) -> i32`, `memory`, `memory64`, `table`, ...
pub fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => {
            let params: Vec<String> = f.params().map(|p| p.to_string()).collect();
            let results: Vec<String> = f.results().map(|r| r.to_string()).collect();
            match results.len() {
                0 => format!("func({})", params.join(", ")),
                1 => format!("func({}) -> {}", params.join(", "), results[0]),
                _ => format!("func({}) -> ({})", params.join(", "), results.join(", ")),
            }
        }
        ExternType::Memory(m) if m.is_64() => "memory64".into(),
        ExternType::Memory(m) if m.is_shared() => "shared memory".into(),
        other => kind(other).into(),
    }
}

/// Every export of a module with its type.
pub fn exports(module: &Module) -> Vec<(String, String)> {
    module
        .exports()
        .map(|e| (e.name().to_string(), describe(&e.ty())))
        .collect()
}

pub(super) fn check_exports(module: &Module) -> Result<()> {
    for (name, expected) in ABI_EXPORTS {
        let ty = module
            .get_export(name)
            .ok_or(Error::Load(LoadError::MissingExport { name, expected }))?;
        let found = describe(&ty);
        if found != expected {
            return Err(Error::Load(LoadError::ExportType {
                name,
                expected,
                found,
            }));
        }
    }
    Ok(())
}

/// What `sidekill policy inspect` shows about a module, whether or not it loads.
#[derive(Debug)]
pub struct Inspection {
    /// Size in bytes.
    pub size: usize,
    /// SHA-256 of the bytes.
    pub sha256: Sha256,
    /// Imports (a loadable policy has none).
    pub imports: Vec<Import>,
    /// Exports with their types.
    pub exports: Vec<(String, String)>,
    /// The loaded policy, or why it does not load.
    pub load: Result<Policy>,
    /// How long compilation took (or reading it from a cache).
    pub compile_time: Duration,
    /// How long loading took after compilation: ABI checks, instantiation, version calls.
    pub load_time: Duration,
}

/// Inspects a module's bytes: what it imports and exports, and whether it loads.
pub fn inspect(runtime: &Runtime, bytes: &[u8]) -> Inspection {
    let sha256 = Sha256::of(bytes);
    let started = std::time::Instant::now();
    let compiled = runtime.compile(bytes, &sha256);
    let compile_time = started.elapsed();
    let (imports, exports) = match compiled {
        Ok(module) => (imports(&module), exports(&module)),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let started = std::time::Instant::now();
    let load = runtime.load(bytes);
    Inspection {
        size: bytes.len(),
        sha256,
        imports,
        exports,
        load,
        compile_time,
        load_time: started.elapsed(),
    }
}
