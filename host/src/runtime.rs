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
//! [`Error::Deadline`] ([`Error::StartDeadline`] when it is the start function that does
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
//! memory is already larger) fails the call with [`Error::MemoryLimit`].
//!
//! # Module cache
//! Compiled modules are cached in memory by the SHA-256 of their bytes (the 16 most
//! recently used, [`Config::memory_cache_entries`]). With [`Config::cache_dir`], compiled code is also written to disk with
//! [`Module::serialize`] and read back with [`Module::deserialize_file`] by later
//! processes, which skips Cranelift entirely. wasmtime trusts the code it deserializes, so
//! the directory is created with mode 0700, and a directory (at [`Runtime::new`]) or an
//! entry (when read) that another user owns or that group or others may write is refused
//! ([`Error::UnsafeCache`]). Each entry starts with a header naming the SHA-256 of the
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
//! ([`Error::CompileLimit`]); the compiled code it writes back starts with the same header
//! as a disk cache entry (the module's SHA-256 and the engine's hash), checked before the
//! code is used. The binary registers itself at start ([`ChildCompiler::register`]), so
//! the controller and every command compile this way; a library user (tests, benches)
//! compiles in-process unless it sets [`Config::child_compiler`].

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Module, ResourceLimiter};

use crate::digest::Sha256;
use crate::error::{boxed, Error, Result};
use crate::limits::ModuleLimits;
use crate::policy::Policy;

/// How many compiled modules the in-memory cache keeps by default.
pub const MODULE_CACHE_ENTRIES: usize = 16;

/// Limits applied to every call into a policy module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// CPU-time budget of one call: instantiation and the start function (for a fresh
    /// instance), copying the request in, the export itself and the reset. Default 100 ms;
    /// values under 1 ms are raised to 1 ms. A call that uses it up fails with
    /// [`Error::Deadline`] or [`Error::StartDeadline`]. CPU time rather than wall-clock
    /// time, so that a legitimate call on a busy or CPU-throttled node is not killed for
    /// time it spent waiting for a CPU; a runaway loop that has a CPU to itself is stopped
    /// after `timeout` of wall-clock time, plus at most one tick (`timeout / 10`, see
    /// [Deadlines](crate::runtime#deadlines)). (On platforms without a per-thread CPU
    /// clock, wall-clock time is used.)
    pub timeout: Duration,
    /// Wall-clock cap of one call, however little CPU it got. Default 1 s; never less
    /// than `timeout`. A call past it fails with [`Error::Deadline`] or
    /// [`Error::StartDeadline`].
    pub wall_timeout: Duration,
    /// Largest linear memory a module may have, in bytes. Default 64 MiB. Growing past
    /// it fails the call with [`Error::MemoryLimit`].
    pub memory: usize,
    /// Largest answer the host copies out, in bytes. Default 16 MiB. A longer
    /// `sidekill_result_len` fails the call with [`Error::ResultTooLarge`].
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
    /// [`Error::UnsafeCache`] when it is not owned by the current user or is writable by
    /// group or others: compiled code read from it runs without further checks.
    pub cache_dir: Option<PathBuf>,
    /// How many compiled modules the in-memory cache keeps, least recently used out
    /// first. Default [`MODULE_CACHE_ENTRIES`]; 0 keeps none.
    pub memory_cache_entries: usize,
    /// How many instances may be alive at once across every policy of this runtime
    /// (the pooling allocator's slots). Default [`INSTANCE_SLOTS`]. Every call runs in a
    /// fresh instance, so this bounds the calls in flight; one more fails with
    /// [`Error::Wasm`] (`instantiate`). 0 uses on-demand allocation (no pool: each call
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
/// kills it at `wall`. Any failure is [`Error::CompileLimit`], except a module the
/// compiler rejects ([`Error::Compile`], with the child's message).
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
                // Pages a call touched are zeroed in place rather than unmapped, up to
                // this much per slot: cheaper than fresh page faults on the next call.
                .linear_memory_keep_resident(1 << 20)
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

    /// Loads a module: checks it is WebAssembly, compiles it (or takes it from the cache),
    /// refuses imports, checks the ABI exports, instantiates it once to read its ABI
    /// version and identity. The self-test on canary requests is separate
    /// ([`Policy::self_test`]); the [`PolicyStore`](crate::PolicyStore) runs both.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::NotWasm`], [`Error::Compile`], [`Error::Imports`],
    /// [`Error::MissingExport`], [`Error::ExportType`], [`Error::AbiVersion`], or a call
    /// error from instantiation or the version calls ([`Error::StartDeadline`],
    /// [`Error::MemoryLimit`], [`Error::Trap`], ...).
    pub fn load(&self, bytes: &[u8]) -> Result<Policy> {
        Policy::load(self.clone(), bytes)
    }

    /// Compiles a module's bytes, or returns the cached compilation for the same SHA-256.
    /// Before anything is compiled, the bytes are checked against the
    /// [`ModuleLimits`](crate::limits::ModuleLimits) (size, functions, locals, globals,
    /// data), so a compile bomb costs one linear parse and a refusal.
    ///
    /// # Errors
    /// [`Error::Empty`], [`Error::NotWasm`], [`Error::ModuleLimit`], [`Error::MemoryLimit`],
    /// [`Error::Compile`], or [`Error::CompileLimit`] from a child compiler.
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
                        .map_err(|e| Error::Compile { source: boxed(e) })?,
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
        Sandbox {
            memory_limit: self.inner.limits.memory,
            memory_hit: None,
            deadline_hit: None,
            cpu_budget: self.inner.limits.timeout,
            wall_budget: self.inner.limits.wall_timeout,
            tick: self.inner.tick,
            cpu_mark: None,
            wall_start: Instant::now(),
        }
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

    fn disk_path(&self, sha256: &Sha256) -> Option<PathBuf> {
        let dir = self.inner.cache_dir.as_ref()?;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner
            .engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish())))
    }

    fn read_disk(&self, sha256: &Sha256) -> Option<Module> {
        let path = self.disk_path(sha256)?;
        if !path.is_file() {
            return None;
        }
        let bytes = match check_private(&path)
            .and_then(|()| std::fs::read(&path).map_err(|e| Error::io(&path, e)))
        {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e.report(), "ignoring a disk cache entry");
                return None;
            }
        };
        let Some(code) = strip_header(&bytes, sha256, self.engine_hash()) else {
            tracing::warn!(path = %path.display(), "ignoring a disk cache entry made for another module or engine");
            return None;
        };
        // SAFETY: `deserialize` runs the machine code in `code` without checking it. The
        // file is owned by this user and writable by no one else (`check_private`, as is
        // its directory, checked in `Runtime::new`), and its header names the SHA-256 of
        // the module it was compiled from and this engine's configuration hash: a file
        // renamed from another module's entry, or written by another engine, is refused
        // above. wasmtime checks its own header too, which we treat as a miss.
        match unsafe { Module::deserialize(&self.inner.engine, code) } {
            Ok(module) => {
                tracing::debug!(path = %path.display(), "compiled module read from the disk cache");
                Some(module)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring unusable disk cache entry");
                None
            }
        }
    }

    /// Compiles `bytes` in a child process under `child`'s bounds and reads its code back.
    /// The module goes to the child's stdin and the code comes back on its stdout: no
    /// file is written, so a read-only root filesystem (the Deployment's) is no obstacle.
    fn compile_in_child(
        &self,
        child: &ChildCompiler,
        bytes: &[u8],
        sha256: &Sha256,
    ) -> Result<Module> {
        use std::io::{Read as _, Write as _};
        use std::process::Stdio;
        let cpu_seconds = (child.cpu.as_secs() + u64::from(child.cpu.subsec_nanos() > 0)).max(1);
        let started = Instant::now();
        let mut process = std::process::Command::new(&child.program)
            .arg(COMPILE_SUBCOMMAND)
            .arg(cpu_seconds.to_string())
            .arg(child.address_space.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io(&child.program, e))?;
        // Each pipe has its own thread, so that a child that stops reading or writing
        // never blocks the others; all end when the child exits or is killed.
        let input = process.stdin.take().map(|mut stdin| {
            let bytes = bytes.to_vec();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            })
        });
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>, cap: u64| {
            pipe.map(|pipe| {
                std::thread::spawn(move || {
                    let mut out = Vec::new();
                    let _ = pipe.take(cap).read_to_end(&mut out);
                    out
                })
            })
        };
        // Far above the code of any module the limits let through (16 MiB of wasm).
        let code = drain(
            process
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            1 << 30,
        );
        let errors = drain(
            process
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            64 << 10,
        );
        let limit = |reason: String| Error::CompileLimit { reason };
        // Polled rather than waited on: the wall-clock bound needs a way out, and a
        // compile is seconds at most, so a few ms of latency cost nothing.
        let mut pause = Duration::from_millis(1);
        let status = loop {
            match process.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= child.wall => {
                    let _ = process.kill();
                    let _ = process.wait();
                    return Err(limit(format!(
                        "ran past its {:?} wall-clock bound and was killed",
                        child.wall
                    )));
                }
                Ok(None) => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => {
                    let _ = process.kill();
                    let _ = process.wait();
                    return Err(Error::io(&child.program, e));
                }
            }
        };
        if let Some(input) = input {
            let _ = input.join();
        }
        let joined = |t: Option<std::thread::JoinHandle<Vec<u8>>>| {
            t.and_then(|t| t.join().ok()).unwrap_or_default()
        };
        let code = joined(code);
        let errors = String::from_utf8_lossy(&joined(errors)).trim().to_string();
        if !status.success() {
            #[cfg(unix)]
            {
                use std::os::unix::process::ExitStatusExt as _;
                // SIGXCPU at the soft limit, SIGKILL at the hard one.
                if matches!(status.signal(), Some(24 | 9)) {
                    return Err(limit(format!(
                        "used its {cpu_seconds} s of CPU time and was stopped"
                    )));
                }
            }
            if status.code() == Some(CHILD_COMPILE_ERROR) {
                return Err(Error::Compile {
                    source: errors.into(),
                });
            }
            return Err(limit(format!(
                "failed in its child process ({status}; address space {} bytes): {}",
                child.address_space,
                crate::escape::text(&errors)
            )));
        }
        let Some(code) = strip_header(&code, sha256, self.engine_hash()) else {
            return Err(limit(
                "gave back code for another module or engine".to_string(),
            ));
        };
        // SAFETY: `deserialize` runs the machine code in `code` without checking it. It was
        // written by our own binary on a pipe only this process holds, and its header names the SHA-256 of `bytes` and
        // this engine's configuration hash, checked above. wasmtime checks its own header.
        let module = unsafe { Module::deserialize(&self.inner.engine, code) }
            .map_err(|e| Error::Compile { source: boxed(e) })?;
        tracing::debug!(took = ?started.elapsed(), "module compiled in a child process");
        Ok(module)
    }

    fn engine_hash(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.inner
            .engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        hasher.finish()
    }

    fn write_disk(&self, sha256: &Sha256, module: &Module) {
        let Some(path) = self.disk_path(sha256) else {
            return;
        };
        if let Err(e) = write_cache_file(&path, sha256, self.engine_hash(), module) {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the disk cache entry");
        }
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

/// The first bytes of every disk cache entry, followed by the module's SHA-256 (32 bytes)
/// and the engine hash (8 bytes, little endian), then wasmtime's serialized module.
const CACHE_MAGIC: &[u8; 16] = b"sidekill-cwasm-1";

fn header(sha256: &Sha256, engine: u64) -> Vec<u8> {
    let mut out = CACHE_MAGIC.to_vec();
    out.extend_from_slice(&sha256.0);
    out.extend_from_slice(&engine.to_le_bytes());
    out
}

/// The compiled code of a cache entry, when its header names this module and engine.
fn strip_header<'b>(bytes: &'b [u8], sha256: &Sha256, engine: u64) -> Option<&'b [u8]> {
    let expected = header(sha256, engine);
    bytes.strip_prefix(expected.as_slice())
}

fn write_cache_file(
    path: &Path,
    sha256: &Sha256,
    engine: u64,
    module: &Module,
) -> std::result::Result<(), String> {
    let dir = path.parent().ok_or("no parent directory")?;
    create_private_dir(dir).map_err(|e| e.to_string())?;
    let mut bytes = header(sha256, engine);
    bytes.extend_from_slice(&module.serialize().map_err(|e| e.to_string())?);
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("module"),
        std::process::id()
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let _ = std::fs::remove_file(&tmp);
    let written = options
        .open(&tmp)
        .and_then(|mut file| std::io::Write::write_all(&mut file, &bytes));
    written.map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        e.to_string()
    })
}

/// The exit code of a `__compile` child whose module does not compile.
const CHILD_COMPILE_ERROR: i32 = 2;

/// The `sidekill __compile CPU_SECONDS AS_BYTES` child: sets its own `RLIMIT_CPU` and
/// `RLIMIT_AS` before it reads anything, compiles the module on stdin with the runtime's
/// engine configuration and writes the code to stdout behind a cache header (the module's SHA-256
/// and the engine's hash). Returns the exit code: 0 done, 2 the module does not compile,
/// 3 anything else (message on stderr).
pub fn compile_child_main(args: &[std::ffi::OsString]) -> u8 {
    match compile_child(args) {
        Ok(()) => 0,
        Err(Error::Compile { source }) => {
            eprintln!("{source}");
            CHILD_COMPILE_ERROR as u8
        }
        Err(e) => {
            eprintln!("{}", e.report());
            3
        }
    }
}

fn compile_child(args: &[std::ffi::OsString]) -> Result<()> {
    let usage = || {
        Error::io(
            COMPILE_SUBCOMMAND,
            std::io::Error::other(
                "usage: sidekill __compile CPU_SECONDS AS_BYTES < module.wasm > module.cwasm",
            ),
        )
    };
    let [cpu, address_space] = args else {
        return Err(usage());
    };
    let number = |s: &std::ffi::OsString| s.to_str().and_then(|s| s.parse::<u64>().ok());
    let (Some(cpu), Some(address_space)) = (number(cpu), number(address_space)) else {
        return Err(usage());
    };
    #[cfg(unix)]
    {
        use rustix::process::{setrlimit, Resource, Rlimit};
        let set = |resource, current: u64, maximum: u64| {
            setrlimit(
                resource,
                Rlimit {
                    current: Some(current),
                    maximum: Some(maximum),
                },
            )
            .map_err(|e| Error::io("setrlimit", e.into()))
        };
        // SIGXCPU at `cpu`, SIGKILL a second later if it is caught or ignored.
        set(Resource::Cpu, cpu, cpu.saturating_add(1))?;
        set(Resource::As, address_space, address_space)?;
    }
    #[cfg(not(unix))]
    let _ = (cpu, address_space);
    let mut bytes = Vec::new();
    let cap = usize_u64(ModuleLimits::default().module_bytes).saturating_add(1);
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::io::stdin().lock(), cap),
        &mut bytes,
    )
    .map_err(|e| Error::io("stdin", e))?;
    let engine = Engine::new(&compile_config()).map_err(|e| Error::Engine { source: boxed(e) })?;
    let module =
        Module::from_binary(&engine, &bytes).map_err(|e| Error::Compile { source: boxed(e) })?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let mut out = header(&Sha256::of(&bytes), hasher.finish());
    out.extend_from_slice(
        &module
            .serialize()
            .map_err(|e| Error::Compile { source: boxed(e) })?,
    );
    std::io::Write::write_all(&mut std::io::stdout().lock(), &out)
        .map_err(|e| Error::io("stdout", e))
}

fn usize_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Refuses a cache directory or file that another user owns or that group or others may
/// write: whoever can write there chooses the native code sidekill runs.
fn check_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        let meta = std::fs::symlink_metadata(path).map_err(|e| Error::io(path, e))?;
        let unsafe_cache = |reason: String| Error::UnsafeCache {
            path: path.to_path_buf(),
            reason,
        };
        if meta.file_type().is_symlink() {
            return Err(unsafe_cache("a symbolic link".into()));
        }
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return Err(unsafe_cache(format!(
                "owned by uid {}, not this user (uid {me})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(unsafe_cache(format!(
                "writable by group or others (mode {:o})",
                meta.mode() & 0o7777
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Refuses empty bytes and bytes without the wasm magic.
pub(crate) fn check_magic(bytes: &[u8]) -> Result<()> {
    if bytes.is_empty() {
        return Err(Error::Empty);
    }
    if !bytes.starts_with(b"\0asm") {
        let found = bytes
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(Error::NotWasm { found });
    }
    Ok(())
}

/// Increments the engine's epoch every tick until dropped.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> Result<Ticker> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("sidekill-epoch".into())
            .spawn(move || {
                // Ends when the sender is dropped (or sends).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engine.increment_epoch();
                }
            })
            .map_err(|e| Error::io("sidekill-epoch thread", e))?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Which clock stopped a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Clock {
    /// The call used its CPU-time budget.
    Cpu,
    /// The call ran past the wall-clock cap.
    Wall,
}

/// The data of every store: the limits, the current call's start, and which limit was hit.
pub(crate) struct Sandbox {
    memory_limit: usize,
    /// The size asked for when the memory limit was hit.
    pub(crate) memory_hit: Option<usize>,
    /// The clock that stopped the call, when one did.
    pub(crate) deadline_hit: Option<Clock>,
    cpu_budget: Duration,
    wall_budget: Duration,
    tick: Duration,
    /// The calling thread's CPU time at the call's first tick; `None` before it.
    cpu_mark: Option<Duration>,
    wall_start: Instant,
}

/// Table growth is capped too, so a module cannot use tables to get around the memory limit.
const TABLE_ELEMENTS: usize = 100_000;

/// The calling thread's CPU time, where the platform has a per-thread clock.
pub fn thread_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
        Some(Duration::new(
            u64::try_from(t.tv_sec).unwrap_or(0),
            u32::try_from(t.tv_nsec).unwrap_or(0),
        ))
    }
    #[cfg(not(unix))]
    {
        None
    }
}

impl Sandbox {
    /// Starts a call's clocks and clears the limit flags; returns the epoch deadline in
    /// ticks: the next tick, where the CPU clock is first read (not here: it is a system
    /// call, and most calls end before the next tick).
    pub(crate) fn begin(&mut self) -> u64 {
        self.memory_hit = None;
        self.deadline_hit = None;
        self.cpu_mark = None;
        self.wall_start = Instant::now();
        1
    }

    fn ticks(&self, left: Duration) -> u64 {
        (left.as_nanos().div_ceil(self.tick.as_nanos()).max(1)) as u64
    }

    /// At an epoch deadline: stop the call, or give it the ticks its budgets have left.
    pub(crate) fn on_deadline(&mut self) -> wasmtime::UpdateDeadline {
        let wall = self.wall_start.elapsed();
        // Without a CPU clock, the call is charged wall-clock time. With one, CPU time is
        // counted from the first tick on.
        let cpu = match (self.cpu_mark, thread_cpu_time()) {
            (Some(mark), Some(now)) => now.saturating_sub(mark),
            (None, Some(now)) => {
                self.cpu_mark = Some(now);
                Duration::ZERO
            }
            (_, None) => wall,
        };
        let stop = if cpu >= self.cpu_budget {
            Some(Clock::Cpu)
        } else if wall >= self.wall_budget {
            Some(Clock::Wall)
        } else {
            None
        };
        match stop {
            Some(clock) => {
                self.deadline_hit = Some(clock);
                wasmtime::UpdateDeadline::Interrupt
            }
            None => {
                let left = (self.cpu_budget - cpu).min(self.wall_budget - wall);
                wasmtime::UpdateDeadline::Continue(self.ticks(left))
            }
        }
    }
}

impl ResourceLimiter for Sandbox {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_hit = Some(desired);
            return Err(wasmtime::Error::msg("memory limit reached"));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }
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

    #[test]
    fn the_tick_is_a_tenth_of_the_timeout_within_bounds() {
        let runtime = Runtime::new(Config::default()).unwrap();
        assert_eq!(runtime.tick(), Duration::from_millis(10));
        assert_eq!(runtime.limits().wall_timeout, Duration::from_secs(1));
        let runtime = Runtime::new(Config {
            limits: Limits {
                timeout: Duration::from_millis(3),
                ..Limits::default()
            },
            ..Config::default()
        })
        .unwrap();
        assert_eq!(runtime.tick(), Duration::from_millis(1));
        let mut sandbox = runtime.sandbox();
        // The first check is at the next tick; there the call gets its whole CPU budget.
        assert_eq!(sandbox.begin(), 1);
        assert!(matches!(
            sandbox.on_deadline(),
            wasmtime::UpdateDeadline::Continue(3)
        ));
    }

    #[test]
    fn a_busy_thread_is_stopped_by_cpu_time_and_an_idle_one_is_not() {
        let runtime = Runtime::new(Config {
            limits: Limits {
                timeout: Duration::from_millis(20),
                wall_timeout: Duration::from_millis(200),
                ..Limits::default()
            },
            ..Config::default()
        })
        .unwrap();
        let mut sandbox = runtime.sandbox();
        sandbox.begin();
        // The first tick starts the CPU count.
        assert!(matches!(
            sandbox.on_deadline(),
            wasmtime::UpdateDeadline::Continue(_)
        ));
        // Sleeping uses no CPU: the call gets more time.
        std::thread::sleep(Duration::from_millis(30));
        assert!(matches!(
            sandbox.on_deadline(),
            wasmtime::UpdateDeadline::Continue(_)
        ));
        // Spinning does (30 ms of this thread's CPU, however long that takes on a busy
        // machine).
        let origin = Instant::now();
        let cpu = || thread_cpu_time().unwrap_or_else(|| origin.elapsed());
        let started = cpu();
        while cpu() - started < Duration::from_millis(30) {
            std::hint::spin_loop();
        }
        assert!(matches!(
            sandbox.on_deadline(),
            wasmtime::UpdateDeadline::Interrupt
        ));
        assert_eq!(sandbox.deadline_hit, Some(Clock::Cpu));
        // Past the wall-clock cap, even an idle call stops.
        sandbox.begin();
        std::thread::sleep(Duration::from_millis(210));
        assert!(matches!(
            sandbox.on_deadline(),
            wasmtime::UpdateDeadline::Interrupt
        ));
        assert_eq!(sandbox.deadline_hit, Some(Clock::Wall));
    }
}
