//! The policy store: the live policy version, validated hot swaps, and rollback.
//!
//! Readers take the live version with [`PolicyStore::current`], an `Arc` clone under a
//! read lock held for a few nanoseconds; a call in flight keeps its `Arc` and finishes on
//! the version it started with, whatever swaps happen meanwhile.
//!
//! A candidate goes live only after it passes, in order: the [`Trust`] check (before
//! anything is compiled: its sha256 is pinned, or its signature verifies with a trusted
//! key, or unsigned modules are allowed; see [`crate::signature`]), loading ([`Runtime::load`]: wasm magic, compilation, no
//! imports, the ABI's exports and types, ABI major version), and the canary self-test
//! ([`canary::run_all`]). A candidate that fails is refused: the live version keeps
//! serving and the refusal is logged at `warn` with the reason's stable name. Every
//! switch is logged at `info`. Both log lines carry the name, version and SHA-256 of the
//! live module and of the candidate. The previous version is kept for
//! [`PolicyStore::rollback`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::canary;
use crate::digest::Sha256;
use crate::error::LoadError;
use crate::error::{Error, Result};
use crate::policy::Policy;
use crate::runtime::Runtime;
use crate::signature::{Admission, Trust};

/// A version the store serves, with where it came from.
#[derive(Debug, Clone)]
pub struct Version {
    /// The loaded policy.
    pub policy: Arc<Policy>,
    /// Where the bytes came from: `embedded`, a file path, `configmap ns/name`, ...
    pub origin: String,
}

impl Version {
    fn describe(&self) -> String {
        describe(&self.policy, &self.origin)
    }
}

fn describe(policy: &Policy, origin: &str) -> String {
    format!(
        "{} {} sha256:{} from {origin}",
        crate::escape::text(&policy.info().name),
        crate::escape::text(&policy.info().version),
        policy.sha256().short()
    )
}

/// What a proposal did.
#[derive(Debug, Clone)]
pub enum Swap {
    /// The candidate went live.
    Switched {
        /// The version that was live before.
        from: Version,
        /// The version now live.
        to: Version,
    },
    /// The candidate has the live version's SHA-256: nothing changed.
    Unchanged(Version),
}

/// Counters for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Switches to a new version (rollbacks included).
    pub switches: u64,
    /// Candidates refused.
    pub refusals: u64,
    /// Rollbacks.
    pub rollbacks: u64,
}

struct State {
    live: Version,
    previous: Option<Version>,
}

/// Holds the live policy version and swaps it atomically.
pub struct PolicyStore {
    runtime: Runtime,
    trust: Trust,
    state: RwLock<State>,
    switches: AtomicU64,
    refusals: AtomicU64,
    rollbacks: AtomicU64,
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore")
            .field("live", &self.live().describe())
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

impl PolicyStore {
    /// A store serving `bytes` once they pass the same validation as any swap. `pin`,
    /// when given, is the only sha256 a module from outside may have; without it every
    /// module is let in unsigned ([`Trust::allow_all`]). The embedded module is always
    /// let in. Use [`PolicyStore::with_trust`] for signed modules.
    ///
    /// # Errors
    /// As [`PolicyStore::validate`].
    pub fn new(
        runtime: Runtime,
        pin: Option<Sha256>,
        bytes: &[u8],
        origin: &str,
    ) -> Result<PolicyStore> {
        let trust = Trust {
            pins: pin.into_iter().collect(),
            allow_unsigned: pin.is_none(),
            ..Trust::default()
        };
        PolicyStore::with_trust(runtime, trust, bytes, None, origin)
    }

    /// A store that lets in only what `trust` admits, serving `bytes` (with their raw
    /// `signature`, when one travels with them) once they pass the same validation as any
    /// swap.
    ///
    /// # Errors
    /// As [`PolicyStore::validate_signed`].
    pub fn with_trust(
        runtime: Runtime,
        trust: Trust,
        bytes: &[u8],
        signature: Option<&[u8]>,
        origin: &str,
    ) -> Result<PolicyStore> {
        let (policy, admission) = admit(&runtime, &trust, bytes, signature)?;
        tracing::info!(
            event = "load",
            origin,
            name = %crate::escape::text(&policy.info().name),
            version = %crate::escape::text(&policy.info().version),
            sha256 = %policy.sha256(),
            admission = %admission,
            "policy loaded"
        );
        Ok(PolicyStore {
            runtime,
            trust,
            state: RwLock::new(State {
                live: Version {
                    policy: Arc::new(policy),
                    origin: origin.to_string(),
                },
                previous: None,
            }),
            switches: AtomicU64::new(0),
            refusals: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
        })
    }

    /// The live policy. Keep the `Arc` for the length of one call: the call finishes on
    /// this version even if another goes live meanwhile.
    pub fn current(&self) -> Arc<Policy> {
        Arc::clone(&self.read().live.policy)
    }

    /// The live version, with its origin.
    pub fn live(&self) -> Version {
        self.read().live.clone()
    }

    /// The version a rollback would return to.
    pub fn previous(&self) -> Option<Version> {
        self.read().previous.clone()
    }

    /// The runtime candidates are loaded in.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The first sha256 of the allowlist, when there is one.
    pub fn pin(&self) -> Option<&Sha256> {
        self.trust.pins.first()
    }

    /// Who may put a module live.
    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    /// Switch, refusal and rollback counts.
    pub fn stats(&self) -> Stats {
        Stats {
            switches: self.switches.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
            rollbacks: self.rollbacks.load(Ordering::Relaxed),
        }
    }

    /// Validates an unsigned candidate without installing it.
    ///
    /// # Errors
    /// As [`PolicyStore::validate_signed`].
    pub fn validate(&self, bytes: &[u8]) -> Result<Policy> {
        self.validate_signed(bytes, None)
    }

    /// Validates a candidate and its raw `signature` without installing it.
    ///
    /// # Errors
    /// [`SignatureError::Unsigned`](crate::signature::SignatureError::Unsigned), [`SignatureError::BadSignature`](crate::signature::SignatureError::BadSignature) or [`LoadError::Pin`] from the trust
    /// check, any load error of [`Runtime::load`], or [`Error::Canary`] for the first
    /// canary that fails.
    pub fn validate_signed(&self, bytes: &[u8], signature: Option<&[u8]>) -> Result<Policy> {
        admit(&self.runtime, &self.trust, bytes, signature).map(|(policy, _)| policy)
    }

    /// Validates an unsigned candidate and makes it live, as [`PolicyStore::propose_signed`].
    ///
    /// # Errors
    /// As [`PolicyStore::propose_signed`].
    pub fn propose(&self, bytes: &[u8], origin: &str) -> Result<Swap> {
        self.propose_signed(bytes, None, origin)
    }

    /// Validates a candidate (with its raw `signature`, when one travels with it) and makes
    /// it live. A candidate with the live SHA-256 changes nothing ([`Swap::Unchanged`]).
    ///
    /// # Errors
    /// As [`PolicyStore::validate_signed`]; the live version is left serving and the
    /// refusal is logged.
    pub fn propose_signed(
        &self,
        bytes: &[u8],
        signature: Option<&[u8]>,
        origin: &str,
    ) -> Result<Swap> {
        let sha256 = Sha256::of(bytes);
        let live = self.live();
        if *live.policy.sha256() == sha256 {
            return Ok(Swap::Unchanged(live));
        }
        match self.validate_signed(bytes, signature) {
            Ok(policy) => Ok(self.install(policy, origin)),
            Err(error) => {
                self.refusals.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    event = "refuse",
                    reason = error.name(),
                    error = %crate::escape::text(&error.report().to_string()),
                    origin,
                    candidate.sha256 = %sha256,
                    live.name = %crate::escape::text(&live.policy.info().name),
                    live.version = %crate::escape::text(&live.policy.info().version),
                    live.sha256 = %live.policy.sha256(),
                    live.origin = %live.origin,
                    "policy candidate refused; the live version keeps serving"
                );
                Err(error)
            }
        }
    }

    /// Makes an already validated policy live, keeping the live one for rollback.
    fn install(&self, policy: Policy, origin: &str) -> Swap {
        let to = Version {
            policy: Arc::new(policy),
            origin: origin.to_string(),
        };
        let from = {
            let mut state = self.write();
            let from = std::mem::replace(&mut state.live, to.clone());
            state.previous = Some(from.clone());
            from
        };
        self.switches.fetch_add(1, Ordering::Relaxed);
        log_switch("switch", &from, &to);
        Swap::Switched { from, to }
    }

    /// Makes the previous version live again; the version it replaces becomes the previous.
    ///
    /// # Errors
    /// [`Error::NoPrevious`] when no version has been replaced yet.
    pub fn rollback(&self) -> Result<Swap> {
        let (from, to) = {
            let mut state = self.write();
            let to = state.previous.take().ok_or(Error::NoPrevious)?;
            let from = std::mem::replace(&mut state.live, to.clone());
            state.previous = Some(from.clone());
            (from, to)
        };
        self.switches.fetch_add(1, Ordering::Relaxed);
        self.rollbacks.fetch_add(1, Ordering::Relaxed);
        log_switch("rollback", &from, &to);
        Ok(Swap::Switched { from, to })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        // The state is two assignments under the lock; a panic cannot leave it half-written.
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn log_switch(event: &'static str, from: &Version, to: &Version) {
    tracing::info!(
        event,
        old.name = %crate::escape::text(&from.policy.info().name),
        old.version = %crate::escape::text(&from.policy.info().version),
        old.sha256 = %from.policy.sha256(),
        old.origin = %from.origin,
        new.name = %crate::escape::text(&to.policy.info().name),
        new.version = %crate::escape::text(&to.policy.info().version),
        new.sha256 = %to.policy.sha256(),
        new.origin = %to.origin,
        "policy {event}: {} -> {}",
        from.describe(),
        to.describe(),
    );
}

/// The checks every candidate passes before it goes live, in order: the SHA-256 pin (when
/// set, before anything is compiled), loading ([`Runtime::load`]), and every canary
/// ([`canary::CANARIES`]). [`PolicyStore::validate`], every swap, and `sidekill policy
/// push` and `rollback` (before they write a module into a ConfigMap) run exactly this.
///
/// # Errors
/// [`LoadError::Pin`], any load error of [`Runtime::load`], or [`Error::Canary`] for the
/// first canary that fails.
pub fn validate(runtime: &Runtime, pin: Option<&Sha256>, bytes: &[u8]) -> Result<Policy> {
    if let Some(expected) = pin {
        let found = Sha256::of(bytes);
        if found != *expected {
            return Err(Error::Load(LoadError::Pin {
                expected: expected.to_string(),
                found: found.to_string(),
            }));
        }
    }
    load_and_test(runtime, bytes)
}

/// The checks every candidate of a store passes, in order: `trust` (before anything is
/// compiled), loading ([`Runtime::load`]), and every canary. Returns how it was let in.
///
/// # Errors
/// [`SignatureError::Unsigned`](crate::signature::SignatureError::Unsigned), [`SignatureError::BadSignature`](crate::signature::SignatureError::BadSignature), [`LoadError::Pin`], any load error of
/// [`Runtime::load`], or [`Error::Canary`] for the first canary that fails.
pub fn admit(
    runtime: &Runtime,
    trust: &Trust,
    bytes: &[u8],
    signature: Option<&[u8]>,
) -> Result<(Policy, Admission)> {
    let admission = trust.admit(bytes, signature)?;
    if admission == Admission::Unsigned {
        tracing::warn!(
            sha256 = %Sha256::of(bytes),
            "an unsigned policy module is let in (--allow-unsigned)"
        );
    }
    Ok((load_and_test(runtime, bytes)?, admission))
}

fn load_and_test(runtime: &Runtime, bytes: &[u8]) -> Result<Policy> {
    let policy = runtime.load(bytes)?;
    for canary in &canary::CANARIES {
        if let Err(e) = canary::run(&policy, canary) {
            tracing::debug!(
                name = %crate::escape::text(&policy.info().name),
                version = %crate::escape::text(&policy.info().version),
                sha256 = %policy.sha256(),
                canary = canary.name,
                "canary failed"
            );
            return Err(e);
        }
    }
    Ok(policy)
}
