//! The wasm runtime: one wasmtime [`Engine`], the limits every call runs under, the epoch
//! ticker that enforces deadlines, and the cache of compiled modules.
//!
//! # Deadlines
//! The engine uses epoch interruption. A ticker thread increments the epoch every
//! `timeout / 10` (at least 1 ms, at most 10 ms). Each call starts with a deadline at
//! the next tick. There the store's callback reads the calling thread's CPU clock for
//! the first time in the call, and from then on compares the CPU time used since that
//! first tick with [`Limits::timeout`] and the wall-clock time since the call began with
//! [`Limits::wall_timeout`]: past either, the call is interrupted with
//! [`CallError::Deadline`] ([`CallError::StartDeadline`] when it is the start function that does
//! not return); otherwise it gets the ticks it has left. A runaway loop with a CPU to
//! itself is thus stopped within `timeout` plus at most one tick (100 to 110 ms by
//! default), while a legitimate call that waited for a CPU on a busy or CPU-throttled
//! node is not. The CPU clock is a system call (about 0.5 µs, a few percent of a plan),
//! so a call that ends before the next tick, as every ordinary call does, never reads
//! it; the CPU it used before its first tick (at most one tick) is not charged. The
//! ticker stops when the last clone of the [`Runtime`] is dropped.
//!
//! # Memory
//! Every store has a [`ResourceLimiter`] that refuses to grow a linear memory past
//! [`Limits::memory`]: the `memory.grow` (or the instantiation of a module whose initial
//! memory is already larger) fails the call with [`CallError::MemoryLimit`].
//!
//! # Module cache
//! Compiled modules are cached in memory by the SHA-256 of their bytes (the 16 most
//! recently used, [`Config::memory_cache_entries`]). With [`Config::cache_dir`], compiled code is also written to disk with
//! [`Module::serialize`] and read back with [`Module::deserialize_file`] by later
//! processes, which skips Cranelift entirely. wasmtime trusts the code it deserializes, so
//! the directory is created with mode 0700, and a directory (at [`Runtime::new`]) or an
//! entry (when read) that another user owns or that group or others may write is refused
//! ([`LoadError::UnsafeCache`]). Each entry starts with a header naming the SHA-256 of the
//! module it was compiled from and the engine's configuration hash: an entry renamed to
//! another module's name is ignored, never run under that module's hash. A corrupt,
//! stale, foreign or incompatible cache file is ignored (logged at `warn`) and rewritten;
//! a cache directory that cannot be written to only costs the recompilation.
//!
//! # Compile bounds
//! Before a module is compiled its contents are checked against [`ModuleLimits`] (size,
//! functions, locals, body size, globals, data): a compile bomb is refused after one
//! linear parse instead of costing the live controller minutes of CPU and gigabytes.
//!
//! What the static limits miss is bounded by compiling in a child process
//! ([`Config::child_compiler`], [`ChildCompiler`]): the `sidekill` binary runs itself as
//! `sidekill __compile`, with `RLIMIT_CPU` and `RLIMIT_AS` set and a wall-clock timeout
//! after which it is killed. A child that goes over a bound costs the caller a refusal
//! ([`LoadError::CompileLimit`]); the compiled code it writes back starts with the same header
//! as a disk cache entry (the module's SHA-256 and the engine's hash), checked before the
//! code is used. The binary registers itself at start ([`ChildCompiler::register`]), so
//! the controller and every command compile this way; a library user (tests, benches)
//! compiles in-process unless it sets [`Config::child_compiler`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::{Engine, Module};

use crate::digest::Sha256;
use crate::error::LoadError;
use crate::error::{boxed, Error, Result};
use crate::limits::ModuleLimits;

mod child;
mod disk;
mod sandbox;

pub use child::compile_child_main;
use disk::{check_private, create_private_dir};
pub use sandbox::thread_cpu_time;
pub(crate) use sandbox::{Clock, Sandbox};
use sandbox::{Ticker, TABLE_ELEMENTS};

/// How many compiled modules the in-memory cache keeps by default.
pub const MODULE_CACHE_ENTRIES: usize = 16;

/// Limits applied to every call into a policy module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU-time budget of one call: instantiation and the start function (for a fresh
    /// instance), copying the request in, the export itself and the reset. Default 100 ms;
    /// values under 1 ms are raised to 1 ms. A call that uses it up fails with
    /// [`CallError::Deadline`] or [`CallError::StartDeadline`]. CPU time rather than wall-clock
    /// time, so that a legitimate call on a busy or CPU-throttled node is not killed for
    /// time it spent waiting for a CPU; a runaway loop that has a CPU to itself is stopped
    /// after `timeout` of wall-clock time, plus at most one tick (`timeout / 10`, see
    /// [Deadlines](crate::runtime#deadlines)). (On platforms without a per-thread CPU
    /// clock, wall-clock time is used.)
    pub timeout: Duration,
    /// Wall-clock cap of one call, however little CPU it got. Default 1 s; never less
    /// than `timeout`. A call past it fails with [`CallError::Deadline`] or
    /// [`CallError::StartDeadline`].
    pub wall_timeout: Duration,
    /// Largest linear memory a module may have, in bytes. Default 64 MiB. Growing past
    /// it fails the call with [`CallError::MemoryLimit`].
    pub memory: usize,
    /// Largest answer the host copies out, in bytes. Default 16 MiB. A longer
    /// `sidekill_result_len` fails the call with [`CallError::ResultTooLarge`].
    pub max_answer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_millis(100),
            wall_timeout: Duration::from_secs(1),
            memory: 64 << 20,
            max_answer: 16 << 20,
        }
    }
}

/// The runtime's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Limits for every call.
    pub limits: Limits,
    /// Bounds on a module's contents, checked before it is compiled. Default
    /// [`ModuleLimits::default`]: 16 MiB, 20,000 functions, 1,000 globals, ...
    pub module_limits: ModuleLimits,
    /// Where compiled modules are kept across processes. Default: none (memory only).
    /// The directory is created (mode 0700) when missing. [`Runtime::new`] fails with
    /// [`LoadError::UnsafeCache`] when it is not owned by the current user or is writable by
    /// group or others: compiled code read from it runs without further checks.
    pub cache_dir: Option<PathBuf>,
    /// How many compiled modules the in-memory cache keeps, least recently used out
    /// first. Default [`MODULE_CACHE_ENTRIES`]; 0 keeps none.
    pub memory_cache_entries: usize,
    /// How many instances may be alive at once across every policy of this runtime
    /// (the pooling allocator's slots). Default [`INSTANCE_SLOTS`]. Every call runs in a
    /// fresh instance, so this bounds the calls in flight; one more fails with
    /// [`CallError::Wasm`] (`instantiate`). 0 uses on-demand allocation (no pool: each call
    /// maps a new memory, about 3x slower).
    pub instance_slots: u32,
    /// Compile in a child process under rlimits and a timeout, or in this process when
    /// `None`. Default: what [`ChildCompiler::register`] registered (the `sidekill` binary
    /// registers itself), else `None`: an embedding library or a test harness is not the
    /// `sidekill` binary and has no `__compile` subcommand to run.
    pub child_compiler: Option<ChildCompiler>,
}

/// How a module is compiled in a child process: `program __compile CPU AS`, the module on
/// its stdin, the code on its stdout.
///
/// The child sets `RLIMIT_CPU` (all its threads together; `SIGXCPU` at the limit, `SIGKILL`
/// a second later) and `RLIMIT_AS` on itself before it reads the module, compiles it with
/// an engine of the same configuration and writes the serialized code back. The parent
/// kills it at `wall`. Any failure is [`LoadError::CompileLimit`], except a module the
/// compiler rejects ([`LoadError::Compile`], with the child's message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildCompiler {
    /// The binary to run: one whose `main` calls [`compile_child_main`] for
    /// [`COMPILE_SUBCOMMAND`] (the `sidekill` binary does).
    pub program: PathBuf,
    /// CPU time the child may use. Default 20 s (the embedded module takes about 0.15 s
    /// in a release build); rounded up to whole seconds, at least 1.
    pub cpu: Duration,
    /// Address space of the child, in bytes. Default 2 GiB.
    pub address_space: u64,
    /// Wall-clock time after which the child is killed. Default 60 s.
    pub wall: Duration,
}

/// The hidden subcommand the child runs: `sidekill __compile CPU_SECONDS AS_BYTES`.
pub const COMPILE_SUBCOMMAND: &str = "__compile";

static REGISTERED_COMPILER: std::sync::OnceLock<ChildCompiler> = std::sync::OnceLock::new();

impl ChildCompiler {
    /// The default bounds for `program`.
    pub fn new(program: PathBuf) -> ChildCompiler {
        ChildCompiler {
            program,
            cpu: Duration::from_secs(20),
            address_space: 2 << 30,
            wall: Duration::from_secs(60),
        }
    }

    /// Makes `self` the default of [`Config::child_compiler`] for this process. The first
    /// registration wins; later ones are ignored.
    pub fn register(self) {
        let _ = REGISTERED_COMPILER.set(self);
    }

    /// What [`ChildCompiler::register`] registered.
    pub fn registered() -> Option<ChildCompiler> {
        REGISTERED_COMPILER.get().cloned()
    }
}

/// Pooling allocator slots by default: well above the controller's `--concurrency`
/// (default 8, at most 1,024 pods handled at once, each with one call at a time).
pub const INSTANCE_SLOTS: u32 = 1_100;

impl Default for Config {
    fn default() -> Self {
        Config {
            limits: Limits::default(),
            module_limits: ModuleLimits::default(),
            cache_dir: None,
            memory_cache_entries: MODULE_CACHE_ENTRIES,
            instance_slots: INSTANCE_SLOTS,
            child_compiler: ChildCompiler::registered(),
        }
    }
}

/// How much of a pooled memory slot stays resident between calls, at most: the pages a
/// call wrote, reset in place. It bounds the memory an idle slot keeps; a call that wrote
/// more gets the rest unmapped and takes page faults for it on the slot's next call. 1 MiB
/// covers a pod's plan (2 and 8 MiB measured no faster), and it is what a kernel without
/// PAGEMAP_SCAN resets with a `memset` on every reuse, so there a larger value would cost
/// every call more.
pub const MEMORY_KEEP_RESIDENT: usize = 1 << 20;

/// The wasm runtime shared by every policy version: cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    limits: Limits,
    tick: Duration,
    module_limits: ModuleLimits,
    cache: Mutex<Vec<(Sha256, Module)>>,
    cache_entries: usize,
    cache_dir: Option<PathBuf>,
    child_compiler: Option<ChildCompiler>,
    _ticker: Ticker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.inner.limits)
            .field("cache_dir", &self.inner.cache_dir)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime with the given configuration: builds the engine and starts the ticker.
    ///
    /// # Errors
    /// [`Error::Engine`] when wasmtime refuses the configuration, [`Error::Io`] when the
    /// ticker thread cannot be started.
    pub fn new(config: Config) -> Result<Runtime> {
        if let Some(dir) = &config.cache_dir {
            create_private_dir(dir).map_err(|e| Error::io(dir, e))?;
            check_private(dir)?;
        }
        let mut wasm = compile_config();
        if config.instance_slots > 0 {
            let mut pool = wasmtime::PoolingAllocationConfig::new();
            pool.total_core_instances(config.instance_slots)
                .total_memories(config.instance_slots)
                .total_tables(config.instance_slots.saturating_mul(4))
                .max_tables_per_module(4)
                .max_memories_per_module(1)
                .table_elements(TABLE_ELEMENTS)
                .max_memory_size(config.limits.memory)
                // When a call's instance is dropped, the pages it wrote are found with
                // Linux's PAGEMAP_SCAN (6.7 and later) and reset in place (zeroed, or copied
                // back from the module's image), up to `MEMORY_KEEP_RESIDENT` per slot; the
                // rest is unmapped. The next call on the slot then takes no page fault on
                // them, which was most of a fresh instance's cost (BENCHMARKS.md,
                // "Pristine state per call"). Without the ioctl (older kernels, other
                // systems) the slot's lowest `MEMORY_KEEP_RESIDENT` bytes are reset
                // whether written or not.
                .pagemap_scan(wasmtime::Enabled::Auto)
                .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
                .table_keep_resident(64 << 10);
            wasm.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        }
        let engine = Engine::new(&wasm).map_err(|e| Error::Engine { source: boxed(e) })?;
        let timeout = config.limits.timeout.max(Duration::from_millis(1));
        let wall_timeout = config.limits.wall_timeout.max(timeout);
        let tick = (timeout / 10).clamp(Duration::from_millis(1), Duration::from_millis(10));
        let ticker = Ticker::start(engine.clone(), tick)?;
        Ok(Runtime {
            inner: Arc::new(Inner {
                engine,
                limits: Limits {
                    timeout,
                    wall_timeout,
                    ..config.limits
                },
                tick,
                module_limits: config.module_limits,
                cache: Mutex::new(Vec::new()),
                cache_entries: config.memory_cache_entries,
                cache_dir: config.cache_dir,
                child_compiler: config.child_compiler,
                _ticker: ticker,
            }),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// The limits every call runs under.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Compiles a module's bytes, or returns the cached compilation for the same SHA-256.
    /// Before anything is compiled, the bytes are checked against the
    /// [`ModuleLimits`](crate::limits::ModuleLimits) (size, functions, locals, globals,
    /// data), so a compile bomb costs one linear parse and a refusal.
    ///
    /// # Errors
    /// [`LoadError::Empty`], [`LoadError::NotWasm`], [`LoadError::ModuleLimit`], [`CallError::MemoryLimit`],
    /// [`LoadError::Compile`], or [`LoadError::CompileLimit`] from a child compiler.
    pub fn compile(&self, bytes: &[u8], sha256: &Sha256) -> Result<Module> {
        check_magic(bytes)?;
        if let Some(module) = self.cached(sha256) {
            return Ok(module);
        }
        crate::limits::check(bytes, &self.inner.module_limits, self.inner.limits.memory)?;
        let module = match self.read_disk(sha256) {
            Some(module) => module,
            None => {
                let module = match &self.inner.child_compiler {
                    Some(child) => self.compile_in_child(child, bytes, sha256)?,
                    None => Module::from_binary(&self.inner.engine, bytes)
                        .map_err(|e| Error::Load(LoadError::Compile { source: boxed(e) }))?,
                };
                self.write_disk(sha256, &module);
                module
            }
        };
        let mut cache = self.lock_cache();
        cache.retain(|(key, _)| key != sha256);
        if self.inner.cache_entries > 0 {
            if cache.len() >= self.inner.cache_entries {
                cache.remove(0);
            }
            cache.push((*sha256, module.clone()));
        }
        Ok(module)
    }

    /// Empties the in-memory module cache (the disk cache is left alone).
    pub fn clear_memory_cache(&self) {
        self.lock_cache().clear();
    }

    /// How often the epoch ticks: `timeout / 10`, between 1 and 10 ms.
    pub fn tick(&self) -> Duration {
        self.inner.tick
    }

    /// The bounds checked before a module is compiled.
    pub fn module_limits(&self) -> &ModuleLimits {
        &self.inner.module_limits
    }

    pub(crate) fn sandbox(&self) -> Sandbox {
        Sandbox::new(&self.inner.limits, self.inner.tick)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Vec<(Sha256, Module)>> {
        // A panic while holding the lock cannot leave the list inconsistent.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn cached(&self, sha256: &Sha256) -> Option<Module> {
        let mut cache = self.lock_cache();
        let at = cache.iter().position(|(key, _)| key == sha256)?;
        let entry = cache.remove(at);
        let module = entry.1.clone();
        cache.push(entry);
        Some(module)
    }
}

/// The engine configuration that decides the compiled code: the same in the runtime and in
/// the `__compile` child, so the child's code is accepted by the runtime's engine (the
/// allocation strategy, set only in the runtime, does not change the code).
fn compile_config() -> wasmtime::Config {
    let mut wasm = wasmtime::Config::new();
    wasm.epoch_interruption(true);
    // Every call gets a fresh instance (no state survives between calls, see
    // `Policy::call`); the pool keeps memory slots mapped and resets them to the
    // module's copy-on-write image, so a fresh instance costs little more than a reused one.
    wasm.memory_init_cow(true);
    wasm
}

/// Refuses empty bytes and bytes without the wasm magic.
pub(crate) fn check_magic(bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Err(Error::Load(LoadError::Empty));
    }
    if !bytes.starts_with(b"\0asm") {
        let found = bytes
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(Error::Load(LoadError::NotWasm { found }));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_is_checked_before_compiling() {
        assert_eq!(check_magic(b"").unwrap_err().name(), "empty");
        let err = check_magic(b"PK\x03\x04zip").unwrap_err();
        assert_eq!(err.name(), "not_wasm");
        assert!(err.to_string().contains("50 4b 03 04"), "{err}");
        assert!(check_magic(b"\0asm\x01\0\0\0").is_ok());
    }
}
