//! The executor's checks of a plan before it acts on it. The module is code from outside (it
//! can be hot-swapped), so the host trusts its answer no further than invariants that need
//! no policy knowledge. A step is refused when:
//!
//! - the pod's UID is not the one the plan was made for (the pod was recreated under the
//!   same name);
//! - its container is not in the pod's spec;
//! - its signal is not a signal number (1 to 64);
//! - an `exec` or `ephemeral` argv is neither the pod's own
//!   `workflows.argoproj.io/kill-cmd-<container>` annotation rendered with the step's signal
//!   nor a command of the module's signed catalogue ([`sidekill_policy::catalogue`], whose
//!   matcher runs natively here: the module supplies templates, never the matching);
//! - an `http` step's port is not declared by a container of the pod;
//! - an `image-swap` names another container's index.
//!
//! A step or action of a kind the host does not know never gets here: the whole answer is
//! refused when it is read ([`crate::answer`]).
//!
//! Before any step of a stop, the stop itself is checked against the pod's status as the
//! host reads it ([`check_stop`]), so that a plan naming a running main container is refused
//! whatever the module calls it. The host acts on a stop only when:
//!
//! - the answer names at least one main container (`pod.mainContainers`, and every container
//!   its predicted outcome calls `main`);
//! - every container the answer calls main is a regular container of the pod's spec
//!   (`spec.containers`) that has terminated according to the pod's status;
//! - the stop's target is not one of them, and has not terminated.
//!
//! None of this is policy knowledge: the answer says which containers are the pod's work, and
//! the host only checks that this work is over and that the stop is not aimed at it. A module
//! that relabels the running main as a sidecar must therefore name some other regular
//! container as main, and that container must really have ended. What it cannot catch: a pod
//! with two main containers where one ended early (a Job whose first step exits while the
//! second runs): a module that calls only the ended one main may stop the running one. It is
//! also stricter than the embedded policy in one case: with several main containers where one
//! failed under `restartPolicy: Never`, the policy is ready at once, and the host waits until
//! every main container has ended. This refusal is not recorded on the pod (unlike a step
//! refusal): the pod's status changes, and the same plan is acceptable once the mains end.
//!
//! Namespaces outside the executor's scope are refused before the pod is planned
//! ([`super::Options::scope`]).

use k8s_openapi::api::core::v1::Pod;
use sidekill_policy::{argo, catalogue, killcmd};

use crate::answer::{Action, Step, Subject};

/// Why a step is refused, for the step's report and an Event.
pub(super) type Refusal = String;

/// Checks `container`'s stop as a whole against the pod's status as it is now: the module's
/// main containers have all ended, and the stop is aimed at none of them (module docs).
pub(super) fn check_stop(pod: &Pod, mains: &[String], container: &str) -> Result<(), Refusal> {
    if mains.is_empty() {
        return Err(
            "the answer names no main container, so nothing shows that the pod's work is done"
                .to_owned(),
        );
    }
    if mains.iter().any(|m| m == container) {
        return Err(format!(
            "the stop targets {container}, which the answer itself calls a main container"
        ));
    }
    let regular = |name: &str| {
        pod.spec
            .as_ref()
            .is_some_and(|s| s.containers.iter().any(|c| c.name == name))
    };
    let terminated = |name: &str| {
        pod.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .chain(
                pod.status
                    .as_ref()
                    .and_then(|s| s.init_container_statuses.as_ref())
                    .into_iter()
                    .flatten(),
            )
            .find(|c| c.name == name)
            .and_then(|c| c.state.as_ref())
            .is_some_and(|s| s.terminated.is_some())
    };
    for main in mains {
        if !regular(main) {
            return Err(format!(
                "the answer calls {main:?} a main container, which is not a regular container of the pod"
            ));
        }
        if !terminated(main) {
            return Err(format!(
                "main container {main} has not terminated (the pod's status as read before the stop)"
            ));
        }
    }
    if terminated(container) {
        return Err(format!("{container} has terminated already"));
    }
    Ok(())
}

/// Every refusal the executor's guard gives the stops of `subject` (one subject of an
/// answer) on `pod` as the host reads it, with `commands` the module's catalogue: each
/// refused stop ([`check_stop`]) or step ([`check_step`]), as `container: why`. Empty when
/// the executor would run every step. What `sidekill policy test --corpus` reports.
pub fn refusals(pod: &Pod, subject: &Subject, commands: &[Vec<String>]) -> Vec<String> {
    let mains = subject.mains();
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    let mut out = Vec::new();
    for stop in &subject.plan.stops {
        let container = stop.container.as_str();
        if let Err(why) = check_stop(pod, &mains, container) {
            out.push(format!("{container}: {why}"));
            continue;
        }
        for (index, step) in stop.steps.iter().enumerate() {
            if let Err(why) = check_step(pod, uid, container, step, commands) {
                out.push(format!("{container}: step {index}: {why}"));
            }
        }
    }
    out
}

/// Checks one step of `container`'s stop against the pod as it is now.
pub(super) fn check_step(
    pod: &Pod,
    planned_uid: &str,
    container: &str,
    step: &Step,
    commands: &[Vec<String>],
) -> Result<(), Refusal> {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    if uid != planned_uid {
        return Err(format!(
            "the pod was recreated (UID {uid}, the plan was made for {planned_uid})"
        ));
    }
    let spec = pod.spec.as_ref();
    let in_spec = spec.is_some_and(|s| {
        s.containers.iter().any(|c| c.name == container)
            || s.init_containers
                .iter()
                .flatten()
                .any(|c| c.name == container)
    });
    if !in_spec {
        return Err(format!("the pod has no container {container}"));
    }
    let (signal, action) = match step {
        Step::Send { signal, action, .. } => (signal, action),
        Step::Wait { .. } => return Ok(()),
        Step::Await { container: target } => {
            let known = spec.is_some_and(|s| s.containers.iter().any(|c| &c.name == target));
            return if known {
                Ok(())
            } else {
                Err(format!(
                    "an await of {target:?}, which is not a container of the pod"
                ))
            };
        }
    };
    let signal = u8::try_from(*signal)
        .ok()
        .filter(|s| (1..=64).contains(s))
        .ok_or_else(|| format!("a send without a signal number (1 to 64): {signal}"))?;
    match action {
        Action::Exec { argv } => {
            if annotation_argv(pod, container, signal).as_ref() == Some(argv)
                || in_catalogue(commands, argv, signal)
            {
                Ok(())
            } else {
                Err(format!(
                    "the argv {argv:?} is neither the pod's kill-cmd annotation for {container} nor a command of the policy's catalogue"
                ))
            }
        }
        Action::Ephemeral(quitter) => {
            if in_catalogue(commands, &quitter.argv, signal) {
                Ok(())
            } else {
                Err(format!(
                    "the quitter's argv {:?} is not a command of the policy's catalogue",
                    quitter.argv
                ))
            }
        }
        Action::Http { port, .. } => {
            let declared = spec.is_some_and(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .flat_map(|c| c.ports.iter().flatten())
                    .any(|p| p.container_port == i32::from(*port))
            });
            if declared {
                Ok(())
            } else {
                Err(format!(
                    "an HTTP request to port {port}, which no container of the pod declares"
                ))
            }
        }
        Action::ImageSwap {
            container_index, ..
        } => {
            let named = spec
                .and_then(|s| s.containers.get(*container_index))
                .map(|c| c.name.as_str());
            if named == Some(container) {
                Ok(())
            } else {
                Err(format!(
                    "an image swap of container index {container_index}, which is {named:?}, not {container}"
                ))
            }
        }
    }
}

/// The pod's own kill-cmd annotation for `container`, rendered with `signal`, when valid.
fn annotation_argv(pod: &Pod, container: &str, signal: u8) -> Option<Vec<String>> {
    let key = format!("{}{container}", argo::KILL_CMD_PREFIX);
    let value = pod.metadata.annotations.as_ref()?.get(&key)?;
    let template = killcmd::parse(value).ok()?;
    Some(killcmd::render(&template, signal))
}

fn in_catalogue(commands: &[Vec<String>], argv: &[String], signal: u8) -> bool {
    commands.iter().any(|t| {
        let template: Vec<&str> = t.iter().map(String::as_str).collect();
        catalogue::matches(&template, argv, signal)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "uid": "u1", "annotations": {
                "workflows.argoproj.io/kill-cmd-side": "[\"/bin/kill\",\"-%d\",\"7\"]"}},
            "spec": {"containers": [
                {"name": "main", "image": "m"},
                {"name": "side", "image": "s", "ports": [{"containerPort": 15020}]}]}
        }))
        .expect("pod")
    }

    fn catalogue() -> Vec<Vec<String>> {
        catalogue::COMMANDS
            .iter()
            .map(|t| t.iter().map(|s| (*s).to_owned()).collect())
            .collect()
    }

    fn send(action: Value) -> Step {
        serde_json::from_value(
            json!({"step": "send", "signal": 15, "signalName": "SIGTERM", "action": action}),
        )
        .expect("a step")
    }

    #[test]
    fn catalogue_and_annotation_argvs_pass_others_are_refused() {
        let p = pod();
        let c = catalogue();
        let ok = |step: &Step| check_step(&p, "u1", "side", step, &c);
        assert_eq!(
            ok(&send(
                json!({"kind": "exec", "argv": ["/bin/sh", "-c", "kill -15 1"]})
            )),
            Ok(())
        );
        assert_eq!(
            ok(&send(
                json!({"kind": "exec", "argv": ["/bin/kill", "-15", "7"]})
            )),
            Ok(())
        );
        let evil = ok(&send(
            json!({"kind": "exec", "argv": ["/bin/sh", "-c", "cat /var/run/secrets/*"]}),
        ));
        assert!(evil.is_err_and(|e| e.contains("catalogue")));
        // The annotation of another container does not vouch for this one.
        let other = check_step(
            &p,
            "u1",
            "main",
            &send(json!({"kind": "exec", "argv": ["/bin/kill", "-15", "7"]})),
            &c,
        );
        assert!(other.is_err());
        // An old module without a catalogue: only annotations run.
        let none = check_step(
            &p,
            "u1",
            "side",
            &send(json!({"kind": "exec", "argv": ["/bin/sh", "-c", "kill -15 1"]})),
            &[],
        );
        assert!(none.is_err());
    }

    #[test]
    fn the_pod_and_the_action_must_be_the_planned_ones() {
        let p = pod();
        let c = catalogue();
        let step = send(json!({"kind": "exec", "argv": ["/bin/sh", "-c", "kill -15 1"]}));
        assert!(check_step(&p, "u0", "side", &step, &c).is_err_and(|e| e.contains("recreated")));
        assert!(check_step(&p, "u1", "ghost", &step, &c).is_err_and(|e| e.contains("no container")));
        let http = |port: u64| {
            send(json!({"kind": "http", "method": "POST", "port": port, "path": "/quitquitquit"}))
        };
        assert_eq!(check_step(&p, "u1", "side", &http(15020), &c), Ok(()));
        assert!(check_step(&p, "u1", "side", &http(22), &c).is_err_and(|e| e.contains("declares")));
        let swap =
            |i: u64| send(json!({"kind": "image-swap", "containerIndex": i, "image": "nop"}));
        assert_eq!(check_step(&p, "u1", "side", &swap(1), &c), Ok(()));
        assert!(check_step(&p, "u1", "side", &swap(0), &c).is_err());
        let mut no_signal = step.clone();
        if let Step::Send { signal, .. } = &mut no_signal {
            *signal = 0;
        }
        assert!(check_step(&p, "u1", "side", &no_signal, &c).is_err_and(|e| e.contains("1 to 64")));
    }

    fn with_states(main: &str, side: &str) -> Pod {
        let state = |s: &str| {
            if s == "terminated" {
                json!({"terminated": {"exitCode": 0}})
            } else {
                json!({"running": {}})
            }
        };
        let mut p = serde_json::to_value(pod()).expect("pod");
        p["status"] = json!({"containerStatuses": [
            {"name": "main", "image": "m", "imageID": "", "ready": false, "restartCount": 0,
             "state": state(main)},
            {"name": "side", "image": "s", "imageID": "", "ready": true, "restartCount": 0,
             "state": state(side)}]});
        serde_json::from_value(p).expect("pod")
    }

    /// Issue 17: a plan naming a running main container is refused, however it is labelled.
    #[test]
    fn a_stop_is_refused_unless_every_main_has_ended_and_it_is_not_one() {
        let main = vec!["main".to_owned()];
        let ended = with_states("terminated", "running");
        assert_eq!(check_stop(&ended, &main, "side"), Ok(()));
        // The main still runs: no stop at all, of the sidecar or of the main.
        let running = with_states("running", "running");
        assert!(check_stop(&running, &main, "side").is_err_and(|e| e.contains("not terminated")));
        assert!(check_stop(&running, &main, "main").is_err_and(|e| e.contains("calls a main")));
        // Relabelled: the running main as a sidecar, the running sidecar as main.
        let side = vec!["side".to_owned()];
        assert!(check_stop(&running, &side, "main").is_err_and(|e| e.contains("not terminated")));
        // No main at all, or a main that is not a regular container.
        assert!(check_stop(&running, &[], "main").is_err_and(|e| e.contains("no main")));
        let ghost = vec!["ghost".to_owned()];
        assert!(check_stop(&ended, &ghost, "side").is_err_and(|e| e.contains("not a regular")));
        // A target that has ended is not stopped again.
        let both = with_states("terminated", "terminated");
        assert!(check_stop(&both, &main, "side").is_err_and(|e| e.contains("already")));
    }

    /// Short strings among the words a step and its argv use (the step and action kinds,
    /// containers of the test pod, the catalogue's and the annotation's argv words), or any.
    fn word() -> impl proptest::strategy::Strategy<Value = String> + Clone {
        use proptest::prelude::*;
        const KNOWN: [&str; 17] = [
            "send",
            "wait",
            "await",
            "exec",
            "http",
            "image-swap",
            "ephemeral",
            "main",
            "side",
            "/bin/sh",
            "-c",
            "kill -15 1",
            "/bin/kill",
            "-15",
            "7",
            "/sidekill-quitter",
            "signal",
        ];
        prop_oneof![
            proptest::sample::select(&KNOWN[..]).prop_map(str::to_owned),
            "\\PC{0,8}",
        ]
    }

    /// Arbitrary JSON, biased towards the shapes of steps: short strings among the words a
    /// step uses, numbers around the signal and port ranges.
    fn json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let word = word();
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-2i64..70_000).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            word.clone().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            let key = prop_oneof![
                Just("step".to_owned()),
                Just("signal".to_owned()),
                Just("action".to_owned()),
                Just("kind".to_owned()),
                Just("argv".to_owned()),
                Just("port".to_owned()),
                Just("container".to_owned()),
                Just("containerIndex".to_owned()),
                Just("seconds".to_owned()),
                word.clone(),
            ];
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(key, inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Steps of every kind the host reads, with fields drawn near the edges the guard checks:
    /// signals around 1 to 64, argvs from the catalogue's and the annotation's words, ports
    /// declared or not, container indexes in and out of the spec.
    fn typed_step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        let argv = proptest::collection::vec(word(), 0..5);
        let name = prop_oneof![
            Just("main".to_owned()),
            Just("side".to_owned()),
            Just("ghost".to_owned())
        ];
        let action = prop_oneof![
            argv.clone().prop_map(|argv| Action::Exec { argv }),
            (any::<u16>(), prop_oneof![Just(15020u16), Just(22u16)]).prop_map(|(a, b)| {
                Action::Http {
                    method: "POST".into(),
                    port: if a % 2 == 0 { a } else { b },
                    path: "/".into(),
                }
            }),
            (0usize..4).prop_map(|i| Action::ImageSwap {
                container_index: i,
                image: "nop".into()
            }),
            (name.clone(), argv).prop_map(|(t, argv)| Action::Ephemeral(crate::answer::Quitter {
                target_container_name: t,
                image: "q".into(),
                argv,
                run_as_user: None,
            })),
        ];
        prop_oneof![
            name.prop_map(|container| Step::Await { container }),
            (-2i64..70, action).prop_map(|(signal, action)| Step::Send {
                signal,
                signal_name: "SIG".into(),
                action,
                expected_exit: None,
                endpoint: None,
            }),
            any::<i64>().prop_map(|seconds| Step::Wait { seconds }),
        ]
    }

    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: cases(),
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Fuzz target (issue 17): any JSON as a step, against a pod: reading it refuses what
        /// is not a step, the guard never panics, a refusal is an error with a reason, and a
        /// send passes only with a signal number.
        #[test]
        fn check_step_never_panics_and_passes_only_known_steps(
            step in json(),
            container in proptest::prop_oneof![
                proptest::strategy::Just("side"), proptest::strategy::Just("main"),
                proptest::strategy::Just("ghost")],
            subject in json(),
            typed in typed_step(),
        ) {
            let p = pod();
            let c = catalogue();
            // Any JSON, read as the host reads an answer (what is not a step is refused
            // there), and a step of any kind and field: each passes only with a signal
            // number, for a container of the pod.
            let read = serde_json::from_value::<Step>(step).ok();
            for step in read.into_iter().chain([typed]) {
                match check_step(&p, "u1", container, &step, &c) {
                    Err(why) => proptest::prop_assert!(!why.is_empty()),
                    Ok(()) => {
                        proptest::prop_assert!(container != "ghost");
                        if let Step::Send { signal, .. } = step {
                            proptest::prop_assert!((1..=64).contains(&signal));
                        }
                    }
                }
            }
            // The stop check and the answer's mains never panic either.
            let mains = serde_json::from_value::<Subject>(subject).map(|s| s.mains()).unwrap_or_default();
            let ended = with_states("terminated", "running");
            if check_stop(&ended, &mains, container).is_ok() {
                proptest::prop_assert!(mains == ["main"] && container != "main");
            }
        }
    }
}
