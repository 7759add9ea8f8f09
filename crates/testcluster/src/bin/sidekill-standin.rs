//! `sidekill-standin`: the programs of the stand-in images (see `sidekill_testcluster::standin`).
//! Run as `sidecar`, `stubborn`, `main`, `pilot-agent` or `pidof` (by a link of that name), or as
//! `sidekill-standin ROLE ARGS...`. Exit code 2: no such role.
//!
//! The module is compiled into this binary directly rather than through the library, so the
//! binary stays small: every cluster copies it into the shell-less image's root.

#![forbid(unsafe_code)]

#[path = "../standin.rs"]
mod standin;

fn main() {
    standin::main_if_standin();
    eprintln!(
        "sidekill-standin: run as one of {} (by that name, or as `sidekill-standin ROLE ...`)",
        standin::ROLES.join(", ")
    );
    std::process::exit(2);
}
