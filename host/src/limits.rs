//! What a module may contain before it is compiled: bounds that make compilation and
//! instantiation cost the host a bounded amount of time and memory.
//!
//! Cranelift's time and memory grow with a function's size and with how many values are
//! live across how many blocks (register allocation), and instantiation's with the number
//! of globals, data segments and table elements; none of that is interruptible by the
//! epoch deadline. A hot swap compiles on the live controller, so a module that would take
//! minutes or gigabytes to compile (a "compile bomb") is refused here, after one linear pass
//! over its bytes with [`wasmparser`] and before any code is generated.
//!
//! The defaults leave the embedded policy module a wide margin (its figures are printed by
//! the unit test `the_embedded_module_is_far_inside_the_limits`): a module over any of them
//! is refused with [`LoadError::ModuleLimit`] naming the limit, the value found and the bound.

use wasmparser::{Parser, Payload};

use crate::error::{CallError, LoadError};
use crate::error::{Error, Result};

/// Bounds on a module's contents, checked before compilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleLimits {
    /// Largest module file, in bytes. Default 16 MiB.
    pub module_bytes: usize,
    /// Most functions defined in the module. Default 20,000.
    pub functions: u32,
    /// Most locals (parameters included) of one function. Default 2,000.
    pub locals: u32,
    /// Largest function body, in bytes. Default 512 KiB.
    pub body_bytes: usize,
    /// Most `locals x blocks` of one function: a bound on the register allocator's work,
    /// where values live across control flow. Default 1,000,000.
    pub locals_times_blocks: u64,
    /// Most globals. Default 1,000.
    pub globals: u32,
    /// Most data segments. Default 10,000.
    pub data_segments: u32,
    /// Most bytes in all data segments. Default 16 MiB.
    pub data_bytes: usize,
    /// Most element segments. Default 10,000.
    pub element_segments: u32,
    /// Most types, imports, exports (each). Default 10,000.
    pub items: u32,
}

impl Default for ModuleLimits {
    fn default() -> Self {
        ModuleLimits {
            module_bytes: 16 << 20,
            functions: 20_000,
            locals: 2_000,
            body_bytes: 512 << 10,
            locals_times_blocks: 1_000_000,
            globals: 1_000,
            data_segments: 10_000,
            data_bytes: 16 << 20,
            element_segments: 10_000,
            items: 10_000,
        }
    }
}

/// What [`check`] counted in a module: the largest value of each bounded quantity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleStats {
    /// The module's size in bytes.
    pub module_bytes: usize,
    /// Functions defined.
    pub functions: u32,
    /// Most locals of one function.
    pub locals: u32,
    /// Largest body.
    pub body_bytes: usize,
    /// Largest `locals x blocks` of one function.
    pub locals_times_blocks: u64,
    /// Globals.
    pub globals: u32,
    /// Data segments.
    pub data_segments: u32,
    /// Bytes of data.
    pub data_bytes: usize,
    /// Element segments.
    pub element_segments: u32,
    /// Most types, imports or exports.
    pub items: u32,
}

fn over<T: PartialOrd + Into<u64> + Copy>(limit: &'static str, found: T, max: T) -> Result<()> {
    if found > max {
        return Err(Error::Load(LoadError::ModuleLimit {
            limit,
            found: found.into(),
            max: max.into(),
        }));
    }
    Ok(())
}

fn usize_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Checks a module's bytes against `limits` in one pass, without compiling anything, and
/// returns what it counted. Malformed sections are left to the compiler, which reports
/// them as [`LoadError::Compile`]; this only refuses what is over a bound.
///
/// `memory` is the runtime's linear-memory limit ([`Limits::memory`](crate::Limits)): a
/// module whose initial memory is larger could never be instantiated, and the pooling
/// allocator would refuse it at compile time with an error that does not say why, so it is
/// refused here, before compiling, with the error instantiation would give.
///
/// # Errors
/// [`LoadError::ModuleLimit`] for the first bound exceeded, [`CallError::MemoryLimit`] (call
/// `instantiate`) for an initial memory over `memory`, [`LoadError::Compile`] when the bytes
/// cannot be parsed far enough to count.
pub fn check(bytes: &[u8], limits: &ModuleLimits, memory: usize) -> Result<ModuleStats> {
    let mut stats = ModuleStats {
        module_bytes: bytes.len(),
        ..ModuleStats::default()
    };
    over(
        "module_bytes",
        usize_u64(bytes.len()),
        usize_u64(limits.module_bytes),
    )?;
    let malformed = |e: wasmparser::BinaryReaderError| {
        Error::Load(LoadError::Compile {
            source: Box::new(e),
        })
    };
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(malformed)? {
            Payload::TypeSection(s) => stats.items = stats.items.max(s.count()),
            Payload::ImportSection(s) => stats.items = stats.items.max(s.count()),
            Payload::ExportSection(s) => stats.items = stats.items.max(s.count()),
            Payload::FunctionSection(s) => {
                stats.functions = s.count();
                over("functions", stats.functions, limits.functions)?;
            }
            Payload::MemorySection(s) => {
                for mem in s {
                    let mem = mem.map_err(malformed)?;
                    // Pages are 64 KiB unless the custom-page-sizes proposal says otherwise.
                    let page = 1u64 << mem.page_size_log2.unwrap_or(16).min(63);
                    let wanted = mem.initial.saturating_mul(page);
                    if wanted > usize_u64(memory) {
                        return Err(Error::Call(CallError::MemoryLimit {
                            call: "instantiate",
                            wanted: usize::try_from(wanted).unwrap_or(usize::MAX),
                            limit: memory,
                        }));
                    }
                }
            }
            Payload::GlobalSection(s) => {
                stats.globals = s.count();
                over("globals", stats.globals, limits.globals)?;
            }
            Payload::ElementSection(s) => {
                stats.element_segments = s.count();
                over("element_segments", s.count(), limits.element_segments)?;
            }
            Payload::DataSection(s) => {
                stats.data_segments = s.count();
                over("data_segments", s.count(), limits.data_segments)?;
                for data in s {
                    stats.data_bytes += data.map_err(malformed)?.data.len();
                }
                over(
                    "data_bytes",
                    usize_u64(stats.data_bytes),
                    usize_u64(limits.data_bytes),
                )?;
            }
            Payload::CodeSectionEntry(body) => {
                let size = body.range().len();
                stats.body_bytes = stats.body_bytes.max(size);
                over("body_bytes", usize_u64(size), usize_u64(limits.body_bytes))?;
                let mut locals: u32 = 0;
                for local in body.get_locals_reader().map_err(malformed)? {
                    let (count, _) = local.map_err(malformed)?;
                    locals = locals.saturating_add(count);
                    // Checked while counting: a declared count of billions is refused
                    // before anything is allocated for it.
                    over("locals", locals, limits.locals)?;
                }
                stats.locals = stats.locals.max(locals);
                let mut blocks: u64 = 0;
                let mut ops = body.get_operators_reader().map_err(malformed)?;
                while !ops.eof() {
                    use wasmparser::Operator;
                    if matches!(
                        ops.read().map_err(malformed)?,
                        Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. }
                    ) {
                        blocks += 1;
                    }
                }
                let product = u64::from(locals.max(1)) * blocks.max(1);
                stats.locals_times_blocks = stats.locals_times_blocks.max(product);
                over("locals_times_blocks", product, limits.locals_times_blocks)?;
            }
            _ => {}
        }
    }
    over("items", stats.items, limits.items)?;
    Ok(stats)
}

/// Reads a file of at most `max` bytes; a larger one is refused without reading it whole
/// (a 100 MB "module" costs a `stat` and a read of `max + 1` bytes, not 100 MB).
///
/// # Errors
/// [`Error::Io`] when it cannot be read, [`LoadError::ModuleLimit`] (`module_bytes`) when it is
/// larger than `max`.
pub fn read_capped(path: &std::path::Path, max: usize) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    let cap = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() > max {
        let found = std::fs::metadata(path).map_or(usize_u64(bytes.len()), |m| m.len());
        return Err(Error::Load(LoadError::ModuleLimit {
            limit: "module_bytes",
            found,
            max: usize_u64(max),
        }));
    }
    Ok(bytes)
}

/// Reads a module file, refusing one over the default 16 MiB ([`ModuleLimits::module_bytes`]).
///
/// # Errors
/// As [`read_capped`].
pub fn read_module(path: &std::path::Path) -> Result<Vec<u8>> {
    read_capped(path, ModuleLimits::default().module_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_module_is_far_inside_the_limits() {
        let stats =
            check(crate::embedded::BYTES, &ModuleLimits::default(), 64 << 20).expect("inside");
        eprintln!("embedded module: {stats:?}");
        let limits = ModuleLimits::default();
        assert!(stats.functions * 4 < limits.functions, "{stats:?}");
        assert!(stats.locals * 2 < limits.locals, "{stats:?}");
        assert!(stats.globals * 10 < limits.globals, "{stats:?}");
        assert!(
            stats.locals_times_blocks * 4 < limits.locals_times_blocks,
            "{stats:?}"
        );
    }

    #[test]
    fn each_bound_is_named_when_exceeded() {
        let module = wat::parse_str(
            "(module (global i32 (i32.const 0)) (global i32 (i32.const 0)) (func) (func))",
        )
        .expect("wat");
        let tight = ModuleLimits {
            globals: 1,
            ..ModuleLimits::default()
        };
        let err = check(&module, &tight, 64 << 20).unwrap_err();
        assert_eq!(err.name(), "module_limit");
        assert!(err.to_string().contains("globals"), "{err}");
        let tight = ModuleLimits {
            functions: 1,
            ..ModuleLimits::default()
        };
        assert!(check(&module, &tight, 64 << 20)
            .unwrap_err()
            .to_string()
            .contains("functions"));
        let tight = ModuleLimits {
            module_bytes: 8,
            ..ModuleLimits::default()
        };
        assert!(check(&module, &tight, 64 << 20)
            .unwrap_err()
            .to_string()
            .contains("module_bytes"));
    }

    /// Issue 17: the pooling allocator refuses such a module at compile time with an
    /// opaque `compile` error; the memory limit is named before anything is compiled.
    #[test]
    fn an_initial_memory_over_the_limit_is_refused_before_compiling() {
        let module = wat::parse_str("(module (memory 2048))").expect("wat");
        let err = check(&module, &ModuleLimits::default(), 64 << 20).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Call(CallError::MemoryLimit {
                    call: "instantiate",
                    wanted: 134_217_728,
                    limit: 67_108_864
                })
            ),
            "{err:?}"
        );
        let fits = wat::parse_str("(module (memory 1024 4096))").expect("wat");
        check(&fits, &ModuleLimits::default(), 64 << 20).expect("exactly the limit, any maximum");
    }
}
