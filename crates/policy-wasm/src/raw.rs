//! The raw ABI exports. See `docs/ABI.md`.

use std::cell::RefCell;
use std::collections::BTreeMap;

use sidekill_policy::Call;

/// Major ABI version: bumped when an export changes meaning or disappears.
const ABI_MAJOR: u32 = 1;
/// Minor ABI version: bumped when an export or an answer field is added.
const ABI_MINOR: u32 = 0;
/// The largest buffer `sidekill_alloc` hands out.
const MAX_ALLOC: u32 = 64 << 20;
/// The largest request a call accepts.
const MAX_REQUEST: u32 = 8 << 20;

#[derive(Default)]
struct State {
    /// Buffers handed to the host, by address.
    buffers: BTreeMap<u32, Vec<u8>>,
    /// The last answer.
    result: Vec<u8>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
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
    let mut buffer = Vec::new();
    if buffer.try_reserve_exact(len as usize).is_err() {
        return 0;
    }
    buffer.resize(len as usize, 0);
    let ptr = buffer.as_ptr() as u32;
    STATE.with_borrow_mut(|s| s.buffers.insert(ptr, buffer));
    ptr
}

/// Frees a buffer from `sidekill_alloc`. Unknown addresses are ignored.
#[no_mangle]
pub extern "C" fn sidekill_free(ptr: u32, _len: u32) {
    STATE.with_borrow_mut(|s| s.buffers.remove(&ptr));
}

/// Frees every buffer and the last answer, so one instance can serve many calls.
#[no_mangle]
pub extern "C" fn sidekill_reset() {
    STATE.with_borrow_mut(|s| *s = State::default());
}

/// The length of the last answer.
#[no_mangle]
pub extern "C" fn sidekill_result_len() -> u32 {
    STATE.with_borrow(|s| s.result.len() as u32)
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

fn answer_request(call: Call, ptr: u32, len: u32) -> u32 {
    let answer = if len > MAX_REQUEST {
        sidekill_policy::error_envelope(
            "request_too_large",
            &format!("request is {len} bytes; at most {MAX_REQUEST} are accepted"),
            None,
        )
    } else {
        STATE.with_borrow(|s| match request(s, ptr, len) {
            Some(bytes) => sidekill_policy::call(call, bytes),
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
    let (&start, buffer) = state.buffers.range(..=ptr).next_back()?;
    let offset = (ptr - start) as usize;
    buffer.get(offset..offset.checked_add(len as usize)?)
}

fn store(answer: Vec<u8>) -> u32 {
    STATE.with_borrow_mut(|s| {
        s.result = answer;
        s.result.as_ptr() as u32
    })
}
