//! The raw ABI exports. See `docs/ABI.md`: the names, signatures and error codes here are
//! the contract loaders are written against.

use alloc::format;
use alloc::vec::Vec;
use core::cell::UnsafeCell;

use sidekill_policy::Call;

use crate::heap::SizeClasses;

/// Major ABI version: bumped when an export changes meaning or disappears.
const ABI_MAJOR: u32 = 1;
/// Minor ABI version: bumped when an export or an answer field is added.
const ABI_MINOR: u32 = 5;
/// The largest buffer `sidekill_alloc` hands out. Larger than `MAX_REQUEST`, so that a host
/// that sends too much gets a `request_too_large` envelope rather than a 0 from alloc.
const MAX_ALLOC: u32 = 64 << 20;
/// The largest request a call accepts.
const MAX_REQUEST: u32 = 8 << 20;

#[global_allocator]
static ALLOCATOR: SizeClasses = SizeClasses::new();

/// A panic is a bug in the core (it answers bad input with an error envelope): trap, which
/// every runtime reports, without std's formatting machinery. (With the `yaml` feature std is
/// linked, for libyaml, and its handler aborts with the same trap.)
#[cfg(not(feature = "yaml"))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    core::arch::wasm32::unreachable()
}

struct State {
    /// Buffers handed to the host, with their addresses. A host keeps one or two alive at a
    /// time, so a list is smaller and no slower than a map.
    buffers: Vec<(u32, Vec<u8>)>,
    /// The last answer.
    result: Vec<u8>,
}

/// The module's state, reached only through [`with_state`].
struct Global(UnsafeCell<State>);

// SAFETY: wasm32-unknown-unknown without the atomics feature runs one thread, and the module
// imports nothing, so no export runs while another is running.
unsafe impl Sync for Global {}

static STATE: Global = Global(UnsafeCell::new(State {
    buffers: Vec::new(),
    result: Vec::new(),
}));

/// Runs `f` on the state. `f` must not call `with_state` again; none of the callers below do.
fn with_state<R>(f: impl FnOnce(&mut State) -> R) -> R {
    // SAFETY: one thread and no re-entry (see `Sync` above), and no caller nests
    // `with_state`, so this is the only reference to the state while `f` runs.
    f(unsafe { &mut *STATE.0.get() })
}

/// The ABI's major version.
#[no_mangle]
pub extern "C" fn sidekill_abi_major() -> u32 {
    ABI_MAJOR
}

/// The ABI's minor version.
#[no_mangle]
pub extern "C" fn sidekill_abi_minor() -> u32 {
    ABI_MINOR
}

/// A zeroed buffer of `len` bytes for a request, or 0 when `len` is 0, over 64 MiB, or
/// memory cannot grow.
#[no_mangle]
pub extern "C" fn sidekill_alloc(len: u32) -> u32 {
    if len == 0 || len > MAX_ALLOC {
        return 0;
    }
    with_state(|s| {
        // Reserve both allocations first: running out of memory answers 0, never traps.
        let mut buffer: Vec<u8> = Vec::new();
        if s.buffers.try_reserve(1).is_err() || buffer.try_reserve_exact(len as usize).is_err() {
            return 0;
        }
        // `resize` zeroes byte by byte at opt-level "z" (10 s for 50 MB in an interpreter);
        // `write_bytes` becomes one `memory.fill`.
        // SAFETY: the capacity is at least `len` (reserved above), and every byte up to `len`
        // is initialised by `write_bytes` before `set_len` exposes it.
        unsafe {
            buffer.as_mut_ptr().write_bytes(0, len as usize);
            buffer.set_len(len as usize);
        }
        let ptr = buffer.as_ptr() as u32;
        s.buffers.push((ptr, buffer));
        ptr
    })
}

/// Frees a buffer from `sidekill_alloc`. Unknown addresses are ignored.
#[no_mangle]
pub extern "C" fn sidekill_free(ptr: u32, _len: u32) {
    with_state(|s| s.buffers.retain(|(start, _)| *start != ptr));
}

/// Frees every buffer and the last answer, so one instance can serve many calls.
#[no_mangle]
pub extern "C" fn sidekill_reset() {
    with_state(|s| {
        s.buffers = Vec::new();
        s.result = Vec::new();
    });
}

/// The length of the last answer.
#[no_mangle]
pub extern "C" fn sidekill_result_len() -> u32 {
    with_state(|s| s.result.len() as u32)
}

/// Plans the request in `[ptr, ptr+len)`; returns the answer's address.
#[no_mangle]
pub extern "C" fn sidekill_plan(ptr: u32, len: u32) -> u32 {
    answer_request(Call::Plan, ptr, len)
}

/// Classifies the request in `[ptr, ptr+len)`; returns the answer's address.
#[no_mangle]
pub extern "C" fn sidekill_classify(ptr: u32, len: u32) -> u32 {
    answer_request(Call::Classify, ptr, len)
}

/// The support matrix; returns the answer's address.
#[no_mangle]
pub extern "C" fn sidekill_matrix() -> u32 {
    store(sidekill_policy::call(Call::Matrix, &[]))
}

/// The policy's name, version, features and preset hash; returns the answer's address.
#[no_mangle]
pub extern "C" fn sidekill_policy_info() -> u32 {
    store(sidekill_policy::call(Call::Info, &[]))
}

/// Reads every YAML or JSON document in `[ptr, ptr+len)`; returns the answer's address.
/// Only in modules built with the `yaml` feature (docs/ABI.md: optional exports).
#[cfg(feature = "yaml")]
#[no_mangle]
pub extern "C" fn sidekill_documents(ptr: u32, len: u32) -> u32 {
    answer_with(ptr, len, |bytes| match core::str::from_utf8(bytes) {
        Ok(text) => sidekill_policy::yaml::documents_envelope(text),
        Err(e) => {
            let error = sidekill_policy::Error::Utf8 {
                offset: e.valid_up_to(),
            };
            sidekill_policy::error_envelope(error.code(), &format!("{error}"), None)
        }
    })
}

fn answer_request(call: Call, ptr: u32, len: u32) -> u32 {
    answer_with(ptr, len, |bytes| sidekill_policy::call(call, bytes))
}

/// Runs `answer` on the request in `[ptr, ptr+len)`, or answers why there is none.
fn answer_with(ptr: u32, len: u32, answer: impl FnOnce(&[u8]) -> Vec<u8>) -> u32 {
    let answer = if len > MAX_REQUEST {
        sidekill_policy::error_envelope(
            "request_too_large",
            &format!("request is {len} bytes; at most {MAX_REQUEST} are accepted"),
            None,
        )
    } else {
        with_state(|s| match request(s, ptr, len) {
            Some(bytes) => answer(bytes),
            None => sidekill_policy::error_envelope(
                "bad_pointer",
                &format!("[{ptr}, {ptr}+{len}) is not inside a buffer from sidekill_alloc"),
                None,
            ),
        })
    };
    store(answer)
}

/// The request bytes, when `[ptr, ptr+len)` lies inside a live buffer.
fn request(state: &State, ptr: u32, len: u32) -> Option<&[u8]> {
    state.buffers.iter().find_map(|(start, buffer)| {
        let offset = ptr.checked_sub(*start)? as usize;
        buffer.get(offset..offset.checked_add(len as usize)?)
    })
}

fn store(answer: Vec<u8>) -> u32 {
    with_state(|s| {
        s.result = answer;
        s.result.as_ptr() as u32
    })
}
