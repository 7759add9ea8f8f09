//! Compiling in a child process under rlimits and a timeout (see
//! [Compile bounds](super#compile-bounds)): the parent's side, [`Runtime::compile_in_child`],
//! and the child's, [`compile_child_main`].

use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use wasmtime::{Engine, Module};

use super::disk::{header, strip_header};
use super::{compile_config, ChildCompiler, Runtime, COMPILE_SUBCOMMAND};
use crate::digest::Sha256;
use crate::error::LoadError;
use crate::error::{boxed, Error, Result};
use crate::limits::ModuleLimits;

impl Runtime {
    /// Compiles `bytes` in a child process under `child`'s bounds and reads its code back.
    /// The module goes to the child's stdin and the code comes back on its stdout: no
    /// file is written, so a read-only root filesystem (the Deployment's) is no obstacle.
    pub(super) fn compile_in_child(
        &self,
        child: &ChildCompiler,
        bytes: &[u8],
        sha256: &Sha256,
    ) -> Result<Module> {
        use std::io::Write as _;
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
        // Far above the code of any module the limits let through (16 MiB of wasm).
        let code = drain(process.stdout.take(), 1 << 30);
        let errors = drain(process.stderr.take(), 64 << 10);
        let limit = |reason: String| Error::Load(LoadError::CompileLimit { reason });
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
                return Err(Error::Load(LoadError::Compile {
                    source: errors.into(),
                }));
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
            .map_err(|e| Error::Load(LoadError::Compile { source: boxed(e) }))?;
        tracing::debug!(took = ?started.elapsed(), "module compiled in a child process");
        Ok(module)
    }
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
        Err(Error::Load(LoadError::Compile { source })) => {
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
    let module = Module::from_binary(&engine, &bytes)
        .map_err(|e| Error::Load(LoadError::Compile { source: boxed(e) }))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let mut out = header(&Sha256::of(&bytes), hasher.finish());
    out.extend_from_slice(
        &module
            .serialize()
            .map_err(|e| Error::Load(LoadError::Compile { source: boxed(e) }))?,
    );
    std::io::Write::write_all(&mut std::io::stdout().lock(), &out)
        .map_err(|e| Error::io("stdout", e))
}

fn usize_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Reads at most `cap` bytes of a child's `pipe` on a thread of its own, so that no pipe's
/// full buffer blocks the child.
fn drain<R: std::io::Read + Send + 'static>(
    pipe: Option<R>,
    cap: u64,
) -> Option<std::thread::JoinHandle<Vec<u8>>> {
    pipe.map(|pipe| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = std::io::Read::read_to_end(&mut pipe.take(cap), &mut out);
            out
        })
    })
}
