//! Integration tests of the test API server: real processes, real signals, real clients
//! (kube-rs, and kubectl 1.37 in `kubectl`). Every test needs root (PID namespaces) and fails
//! with a message saying so when run without it; the kubectl tests also need
//! `crates/testcluster/setup-kubectl.sh` to have run.

mod cli;
mod common;
mod ephemeral;
mod exec;
mod faults;
mod kubectl;
mod lifecycle;
mod pid1;
mod swap;
mod wire;
