//! One call's whole life: a fresh [`Store`] and instance from the policy's [`InstancePre`],
//! the request copied in, the export run under the limits, the answer copied out, and the
//! wasmtime error turned into the [`Error`] variant that says what happened.

use wasmtime::{Extern, Instance, Memory, ModuleExport, Store, Trap, TypedFunc};

use super::Policy;
use crate::error::{boxed, Error, Result};
use crate::error::{CallError, LoadError};
use crate::runtime::{Clock, Sandbox};

impl Policy {
    /// A fresh store and instance; the call's clocks start before instantiation, so the
    /// start function runs under the budget.
    pub(super) fn session(&self) -> Result<Session> {
        let mut store = Store::new(self.runtime.engine(), self.runtime.sandbox());
        store.limiter(|sandbox| sandbox);
        store.epoch_deadline_callback(|mut ctx| Ok(ctx.data_mut().on_deadline()));
        let ticks = store.data_mut().begin();
        store.set_epoch_deadline(ticks);
        let instance = match self.pre.instantiate(&mut store) {
            Ok(instance) => instance,
            Err(e) => return Err(fault(&store, self.runtime.limits(), "instantiate", e)),
        };
        let memory = instance
            .get_module_export(&mut store, &self.exports.memory)
            .and_then(Extern::into_memory)
            .ok_or(Error::Load(LoadError::MissingExport {
                name: "memory",
                expected: "memory",
            }))?;
        let mut func = |export: &ModuleExport, name: &'static str| {
            instance
                .get_module_export(&mut store, export)
                .and_then(Extern::into_func)
                .ok_or(Error::Load(LoadError::MissingExport {
                    name,
                    expected: "a function",
                }))
        };
        let alloc = func(&self.exports.alloc, "sidekill_alloc")?;
        let result_len = func(&self.exports.result_len, "sidekill_result_len")?;
        let wrong = |name, expected| {
            Error::Load(LoadError::ExportType {
                name,
                expected,
                found: "another type".into(),
            })
        };
        let alloc = alloc
            .typed::<i32, i32>(&store)
            .map_err(|_| wrong("sidekill_alloc", "func(i32) -> i32"))?;
        let result_len = result_len
            .typed::<(), i32>(&store)
            .map_err(|_| wrong("sidekill_result_len", "func() -> i32"))?;
        Ok(Session {
            store,
            instance,
            memory,
            alloc,
            result_len,
            limits: *self.runtime.limits(),
        })
    }
}

/// A fresh store with a fresh instance: one call's whole life.
pub(super) struct Session {
    store: Store<Sandbox>,
    instance: Instance,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    result_len: TypedFunc<(), i32>,
    limits: crate::runtime::Limits,
}

impl Session {
    pub(super) fn func<P, R>(
        &mut self,
        export: &ModuleExport,
        name: &'static str,
    ) -> Result<TypedFunc<P, R>>
    where
        P: wasmtime::WasmParams,
        R: wasmtime::WasmResults,
    {
        let func = self
            .instance
            .get_module_export(&mut self.store, export)
            .and_then(Extern::into_func)
            .ok_or(Error::Load(LoadError::MissingExport {
                name,
                expected: "a function",
            }))?;
        func.typed(&self.store).map_err(|_| {
            Error::Load(LoadError::ExportType {
                name,
                expected: "the ABI's signature",
                found: "another type".into(),
            })
        })
    }

    pub(super) fn run<R>(
        &mut self,
        name: &'static str,
        f: impl FnOnce(&mut Store<Sandbox>) -> wasmtime::Result<R>,
    ) -> Result<R> {
        f(&mut self.store).map_err(|e| fault(&self.store, &self.limits, name, e))
    }

    /// Copies the request into a buffer from `sidekill_alloc`. An empty request is an empty
    /// range of a one-byte buffer: `sidekill_alloc(0)` gives no buffer, and a range outside
    /// every buffer is `bad_pointer`, where the policy's own answer to no bytes is
    /// `invalid_json` (as the native core answers).
    pub(super) fn write_request(&mut self, request: &[u8]) -> Result<(i32, i32)> {
        let len = i32::try_from(request.len()).map_err(|_| {
            Error::Call(CallError::AllocFailed {
                len: request.len(),
                ptr: 0,
            })
        })?;
        let alloc = self.alloc.clone();
        let ptr = self.run("sidekill_alloc", |store| alloc.call(store, len.max(1)))?;
        let failed = Error::Call(CallError::AllocFailed {
            len: request.len(),
            ptr: ptr as u32,
        });
        if ptr == 0 {
            return Err(failed);
        }
        self.memory
            .write(&mut self.store, ptr as u32 as usize, request)
            .map_err(|_| failed)?;
        Ok((ptr, len))
    }

    /// Copies `memory[ptr .. ptr + sidekill_result_len()]` out.
    pub(super) fn read_answer(
        &mut self,
        name: &'static str,
        ptr: i32,
        max: usize,
    ) -> Result<Vec<u8>> {
        let result_len = self.result_len.clone();
        let len = self.run("sidekill_result_len", |store| result_len.call(store, ()))? as u32;
        if len as usize > max {
            return Err(Error::Call(CallError::ResultTooLarge {
                call: name,
                len: u64::from(len),
                max,
            }));
        }
        let data = self.memory.data(&self.store);
        let start = ptr as u32 as usize;
        start
            .checked_add(len as usize)
            .and_then(|end| data.get(start..end))
            .map(<[u8]>::to_vec)
            .ok_or(Error::Call(CallError::ResultOutOfBounds {
                call: name,
                ptr: ptr as u32,
                len,
                memory: data.len(),
            }))
    }
}

/// Turns a wasmtime error into the variant that says what happened.
fn fault(
    store: &Store<Sandbox>,
    limits: &crate::runtime::Limits,
    call: &'static str,
    err: wasmtime::Error,
) -> Error {
    let sandbox = store.data();
    if let Some(wanted) = sandbox.memory_hit {
        return Error::Call(CallError::MemoryLimit {
            call,
            wanted,
            limit: limits.memory,
        });
    }
    let deadline = match sandbox.deadline_hit {
        Some(Clock::Cpu) => Some((limits.timeout, "CPU-time")),
        Some(Clock::Wall) => Some((limits.wall_timeout, "wall-clock")),
        None if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) => {
            Some((limits.timeout, "CPU-time"))
        }
        None => None,
    };
    match (deadline, err.downcast_ref::<Trap>()) {
        (Some((limit, clock)), _) if call == "instantiate" => {
            Error::Call(CallError::StartDeadline { limit, clock })
        }
        (Some((limit, clock)), _) => Error::Call(CallError::Deadline { call, limit, clock }),
        (None, Some(trap)) => Error::Call(CallError::Trap { call, trap: *trap }),
        (None, None) => Error::Call(CallError::Wasm {
            call,
            source: boxed(err),
        }),
    }
}
