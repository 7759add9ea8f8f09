//! The step machine: one container's stop, step by step in plan order, each step recorded
//! so that none runs twice.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use super::executor::Executor;
use super::guard;
use super::methods::{swapped_end, swapped_out_exit};
use super::pod::PodRef;
use super::records::Done;
use super::status::{container_state, ended, restarted_before, running_instance, End, State};
use super::waits::{now_ms, waiting, Waiting};
use super::{ContainerReport, Error, Result, StepReport, Verdict};
use crate::answer::{Action, ContainerStop, Step};

pub(super) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Why a pod's plan stopped early.
pub(super) enum Stop {
    Gone,
    Err(Error),
    /// A wait longer than [`Executor::suspending`]'s hold was written on the pod
    /// (`sidekill.dev/wait-<container>`) and handed back: resume at this Unix millisecond, or
    /// when the watch sees the awaited container end.
    Suspend(u64),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Err(e)
    }
}

impl Executor {
    /// Carries out one container's stop; the records it owes at the end (a send whose
    /// container then ended: [`Done::owe`]) go into `owed`, for the plan's last write.
    pub(super) async fn stop_container(
        &self,
        at: PodRef<'_>,
        stop: &ContainerStop,
        commands: (&[String], &[Vec<String>]),
        report: &mut ContainerReport,
        owed: &mut serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), Stop> {
        let Some(pod) = self.get(at.ns, at.name).await? else {
            return Err(Stop::Gone);
        };
        let mut done = Done::read(&pod, &report.container, &stop.steps);
        self.run_steps(at, stop, commands, report, (&pod, &mut done))
            .await?;
        done.owed_into(owed);
        Ok(())
    }

    /// The step machine of [`Executor::stop_container`], on `pod` as read and its record.
    async fn run_steps(
        &self,
        at: PodRef<'_>,
        stop: &ContainerStop,
        (mains, commands): (&[String], &[Vec<String>]),
        report: &mut ContainerReport,
        (pod, done): (&Pod, &mut Done),
    ) -> Result<(), Stop> {
        let PodRef { ns, name, uid } = at;
        let container = report.container.clone();
        let steps = &stop.steps;
        // A wait handed back earlier, or a send begun, named by its step's identity (a stale
        // one, whose step is recorded or not in this plan, is ignored).
        let mut resumed = waiting(pod, &container)
            .and_then(|mut w| {
                w.step = done.resolve(&w)?;
                Some(w)
            })
            .filter(|w| !done.contains(&w.step));
        if let Some(end) = resumed.as_ref().and_then(|w| w.met(pod, &container)) {
            // The sidecar ended during its suspended wait: the wait is recorded (which removes
            // it) and the stop reported now.
            let step = resumed.as_ref().map_or(0, |w| w.step);
            for (index, s) in steps.iter().enumerate() {
                let result = if done.contains(&index) {
                    "skipped-recorded"
                } else if index == step {
                    "terminated"
                } else {
                    "skipped-terminated"
                };
                report.steps.push(step_report(index, s, result));
            }
            // Owed to the plan's last write, which also removes the wait.
            done.owe(step);
            self.finish(at, report, None, end, done, steps.len())
                .await?;
            return Ok(());
        }
        if let State::Terminated(code) = container_state(pod, &container) {
            report.exit_code = Some(code);
            report.verdict = if done.is_empty() {
                Verdict::AlreadyTerminated
            } else {
                Verdict::Stopped
            };
            for (index, step) in steps.iter().enumerate() {
                report
                    .steps
                    .push(step_report(index, step, "skipped-terminated"));
            }
            return Ok(());
        }
        // Restarted by the kubelet after an earlier stop of sidekill's (a step is recorded):
        // the instance sidekill stopped has ended, and the new one is left alone.
        if !done.is_empty() {
            if let Some((restarts, code)) = restarted_before(pod, &container) {
                report.exit_code = Some(code);
                report.restart_count = Some(restarts);
                report.verdict = Verdict::Restarted;
                for (index, step) in steps.iter().enumerate() {
                    report
                        .steps
                        .push(step_report(index, step, "skipped-restarted"));
                }
                return Ok(());
            }
        }
        if let Err(why) = guard::check_stop(pod, mains, &container) {
            // Not recorded: the pod's status changes, and the same plan is fine once the
            // main containers have ended (guard.rs).
            for (index, step) in steps.iter().enumerate() {
                let mut sr = step_report(index, step, "refused");
                sr.message = Some(why.clone());
                report.steps.push(sr);
            }
            self.event(
                at,
                "Warning",
                "SidecarStepRefused",
                &format!("container {container}: every step refused: {why}"),
            )
            .await;
            return Ok(());
        }
        // The instance this plan stops: its end, not a later instance's, is what is awaited
        // (a resumed wait names the one it was waiting for).
        let instance = resumed
            .as_ref()
            .and_then(|w| w.instance.clone())
            .or_else(|| running_instance(pod, &container));
        let instance = instance.as_deref();
        let mut first_send: Option<Instant> = None;
        let mut index = 0;
        while index < steps.len() {
            let step = &steps[index];
            if done.contains(&index) {
                report
                    .steps
                    .push(step_report(index, step, "skipped-recorded"));
                index += 1;
                continue;
            }
            let started = Instant::now();
            let mut sr = step_report(index, step, "ran");
            if resumed.take_if(|w| w.step == index && w.started).is_some() {
                // Begun by an executor that stopped before recording its end: not sent
                // again. The container still runs (its end was checked above), so the plan
                // goes on with the next step: the grace wait, then the next signal.
                sr.result = "unconfirmed".into();
                sr.message = Some(
                    "begun by an executor that stopped before recording its end: not sent again"
                        .into(),
                );
                self.record(at, done, index).await?;
                report.steps.push(sr);
                index += 1;
                continue;
            }
            if let Some(w) = resumed.take_if(|w| w.step == index) {
                // A wait handed back earlier: resumed from the record, to its deadline.
                let (_, matched) = self
                    .wait_for(at, (&container, done), &w, |p| {
                        w.met(p, &container).is_some()
                    })
                    .await?;
                sr.millis = millis(started.elapsed());
                if matched && w.target.is_none() {
                    sr.result = "terminated".into();
                    report.steps.push(sr);
                    let Some(pod) = self.get(ns, name).await? else {
                        return Err(Stop::Gone);
                    };
                    if let Some(end) = w.met(&pod, &container) {
                        // Recording the step (owed to the plan's last write) also removes
                        // the wait.
                        done.owe(index);
                        self.finish(at, report, first_send, end, done, steps.len())
                            .await?;
                        return Ok(());
                    }
                    index += 1;
                    continue;
                }
                sr.result = if matched { "terminated" } else { "timeout" }.into();
                self.record(at, done, index).await?;
                report.steps.push(sr);
                index += 1;
                continue;
            }
            if let Err(why) = guard::check_step(pod, uid, &container, step, commands) {
                // Recorded like a step run: the same plan would be refused again.
                sr.result = "refused".into();
                self.record(at, done, index).await?;
                self.event(
                    at,
                    "Warning",
                    "SidecarStepRefused",
                    &format!("container {container}: step {index} refused: {why}"),
                )
                .await;
                sr.message = Some(why);
                report.steps.push(sr);
                index += 1;
                continue;
            }
            match step {
                Step::Await { container: target } => {
                    let w = Waiting {
                        step: index,
                        id: done.id(index),
                        until: now_ms().saturating_add(millis(self.options.await_timeout)),
                        instance: None,
                        target: Some(target.clone()),
                        swap: false,
                        started: false,
                    };
                    let (_, matched) = self
                        .wait_for(at, (&container, done), &w, |p| {
                            w.met(p, &container).is_some()
                        })
                        .await?;
                    sr.result = if matched { "terminated" } else { "timeout" }.into();
                }
                Step::Send { action, .. } => {
                    first_send.get_or_insert(started);
                    // Recorded as begun first: an executor that stops in the middle leaves
                    // the next one a record not to send it again.
                    let begun = Waiting {
                        step: index,
                        id: done.id(index),
                        until: 0,
                        instance: instance.map(str::to_owned),
                        target: None,
                        swap: false,
                        started: true,
                    };
                    self.write_waiting(at, (&container, done), Some(&begun), false)
                        .await?;
                    let sent: Result<(), Stop> = async {
                        match action {
                            Action::Exec { argv } => {
                                let out = self.exec(ns, name, &container, argv).await?;
                                sr.result = out.result.into();
                                sr.exit_code = out.exit_code;
                                sr.message = out.message;
                                sr.stdout = out.stdout;
                                sr.stderr = out.stderr;
                            }
                            Action::Http { method, port, path } => {
                                let (result, message) =
                                    self.http(ns, name, method, *port, path).await?;
                                sr.result = result.into();
                                sr.message = Some(message);
                            }
                            Action::ImageSwap {
                                container_index,
                                image,
                            } => {
                                let sent = self
                                    .image_swap(at, &container, *container_index, image)
                                    .await?;
                                sr.result = sent.result.into();
                                sr.message = Some(sent.message);
                            }
                            Action::Ephemeral(quitter) => {
                                let sent = self
                                    .ephemeral_quitter(ns, name, &container, index, quitter)
                                    .await?;
                                sr.result = sent.result.into();
                                sr.exit_code = sent.exit_code;
                                sr.message = Some(sent.message);
                            }
                        }
                        Ok(())
                    }
                    .await;
                    if let Err(e) = sent {
                        // Refused before anything was sent (a missing permission): the record
                        // of it as begun goes, so that a later attempt sends it.
                        if matches!(e, Stop::Err(_)) {
                            let _ = self
                                .write_waiting(at, (&container, done), None, false)
                                .await;
                        }
                        return Err(e);
                    }
                    // Written with the container's next write, or the plan's last.
                    done.owe(index);
                    self.event(
                        at,
                        "Normal",
                        "SidecarStep",
                        &format!(
                            "container {container}: step {index} {}: {}{}",
                            crate::render::step(step),
                            sr.result,
                            sr.exit_code
                                .map(|c| format!(", exit {c}"))
                                .unwrap_or_default()
                        ),
                    )
                    .await;
                    // Watch for termination up to the next wait step's deadline (which is
                    // then consumed), or the settle time after the last send.
                    let next_wait = steps.get(index + 1).filter(|s| s.is_wait());
                    let deadline = match next_wait {
                        Some(Step::Wait { seconds }) => self.capped(*seconds),
                        _ => self.options.settle,
                    };
                    let swapped = matches!(action, Action::ImageSwap { .. });
                    // A wait longer than the hold is handed back (as the following wait step).
                    let w = next_wait.map(|_| Waiting {
                        step: index + 1,
                        id: done.id(index + 1),
                        until: now_ms().saturating_add(millis(
                            deadline.saturating_sub(started.elapsed())
                                + if swapped {
                                    self.options.settle
                                } else {
                                    Duration::ZERO
                                },
                        )),
                        instance: instance.map(str::to_owned),
                        target: None,
                        swap: swapped && sr.result == "ran",
                        started: false,
                    });
                    let ended = if let Some(w) = &w {
                        let (pod, met) = self
                            .wait_for(at, (&container, done), w, |p| {
                                w.met(p, &container).is_some()
                            })
                            .await?;
                        if let Some(old) = pod
                            .as_ref()
                            .filter(|_| met && w.swap)
                            .and_then(|p| swapped_out_exit(p, &container))
                        {
                            let note = format!("; the swapped-out sidecar exited {old}");
                            sr.message.get_or_insert_with(String::new).push_str(&note);
                        }
                        pod.filter(|_| met).and_then(|p| w.met(&p, &container))
                    } else if swapped && sr.result == "ran" {
                        // The kubelet kills the sidecar at the end of the grace period (the
                        // wait step's seconds) and then starts the nop: allow it the settle
                        // time on top.
                        let (pod, met) = self
                            .watch_until(ns, name, deadline + self.options.settle, |p| {
                                swapped_end(p, &container, instance).is_some()
                            })
                            .await?;
                        let pod = pod.filter(|_| met);
                        if let Some(old) =
                            pod.as_ref().and_then(|p| swapped_out_exit(p, &container))
                        {
                            let note = format!("; the swapped-out sidecar exited {old}");
                            sr.message.get_or_insert_with(String::new).push_str(&note);
                        }
                        pod.and_then(|p| swapped_end(&p, &container, instance))
                    } else {
                        self.watch_terminated(ns, name, &container, instance, deadline)
                            .await?
                    };
                    sr.millis = millis(started.elapsed());
                    if let Some(end) = ended {
                        sr.terminated_after_ms = Some(millis(started.elapsed()));
                        report.steps.push(sr);
                        self.finish(at, report, first_send, end, done, steps.len())
                            .await?;
                        return Ok(());
                    }
                    report.steps.push(sr);
                    if let Some(w) = next_wait {
                        index += 1;
                        let mut wr = step_report(index, w, "timeout");
                        wr.millis = millis(deadline);
                        self.record(at, done, index).await?;
                        report.steps.push(wr);
                    }
                    index += 1;
                    continue;
                }
                Step::Wait { seconds } => {
                    let w = Waiting {
                        step: index,
                        id: done.id(index),
                        until: now_ms().saturating_add(millis(self.capped(*seconds))),
                        instance: instance.map(str::to_owned),
                        target: None,
                        swap: false,
                        started: false,
                    };
                    let (pod, matched) = self
                        .wait_for(at, (&container, done), &w, |p| {
                            w.met(p, &container).is_some()
                        })
                        .await?;
                    match pod.filter(|_| matched).and_then(|p| w.met(&p, &container)) {
                        Some(end) => {
                            sr.result = "terminated".into();
                            sr.millis = millis(started.elapsed());
                            report.steps.push(sr);
                            self.finish(at, report, first_send, end, done, steps.len())
                                .await?;
                            return Ok(());
                        }
                        None => sr.result = "timeout".into(),
                    }
                }
            }
            sr.millis = millis(started.elapsed());
            self.record(at, done, index).await?;
            report.steps.push(sr);
            index += 1;
        }
        // Every step ran: one last look.
        let Some(pod) = self.get(ns, name).await? else {
            return Err(Stop::Gone);
        };
        if let Some(end) = ended(&pod, &container, instance) {
            self.finish(at, report, first_send, end, done, steps.len())
                .await?;
            return Ok(());
        }
        report.verdict = Verdict::StillRunning;
        if steps.is_empty() {
            if done.present {
                // Reported before: no second Event.
                return Ok(());
            }
            // Nothing to run (the plan cannot stop it): an empty record says it was reported,
            // so a controller does not come back to it.
            self.record_all(at, done, &[]).await?;
        }
        let fixes: Vec<String> = report
            .diagnostics
            .iter()
            .filter(|d| d.matters())
            .filter_map(|d| d.fix.clone())
            .collect();
        self.event(
            at,
            "Warning",
            "SidecarStillRunning",
            &format!(
                "container {container} is still running after every step{}",
                if fixes.is_empty() {
                    String::new()
                } else {
                    format!("; fix: {}", fixes.join("; "))
                }
            ),
        )
        .await;
        Ok(())
    }

    /// The container's instance ended after sidekill's steps: stopped, or restarted by the
    /// kubelet. A restarted container gets every step recorded as done, so that the record
    /// keeps it finished: no later plan stops the new instance (which would loop, stop after
    /// restart, for as long as the pod lives).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn finish(
        &self,
        at: PodRef<'_>,
        report: &mut ContainerReport,
        first_send: Option<Instant>,
        end: End,
        done: &mut Done,
        steps: usize,
    ) -> Result<(), Stop> {
        report.exit_code = Some(end.code);
        report.stopped_after_ms = first_send.map(|t| millis(t.elapsed()));
        let after = report
            .stopped_after_ms
            .map(|m| format!(" {m} ms after the first signal"))
            .unwrap_or_default();
        if end.restarted {
            report.verdict = Verdict::Restarted;
            report.restart_count = Some(end.restart_count);
            let missing: Vec<usize> = (0..steps).filter(|i| !done.contains(i)).collect();
            if !missing.is_empty() {
                self.record_all(at, done, &missing).await?;
            }
            let fixes: Vec<String> = report
                .diagnostics
                .iter()
                .filter(|d| d.code.as_deref() == Some("sidecar-restarted"))
                .filter_map(|d| d.fix.clone())
                .collect();
            self.event(at,
                "Warning",
                "SidecarRestarted",
                &format!(
                    "container {} exited {}{after} and the kubelet restarted it (restart count {}); sidekill leaves the new instance alone{}",
                    report.container,
                    end.code,
                    end.restart_count,
                    if fixes.is_empty() {
                        String::new()
                    } else {
                        format!("; fix: {}", fixes.join("; "))
                    }
                ),
            )
            .await;
            return Ok(());
        }
        report.verdict = Verdict::Stopped;
        self.event(
            at,
            "Normal",
            "SidecarStopped",
            &format!(
                "container {} terminated with exit code {}{after}",
                report.container, end.code
            ),
        )
        .await;
        Ok(())
    }
}

pub(super) fn step_report(index: usize, step: &Step, result: &str) -> StepReport {
    StepReport {
        step: Some(step.clone()),
        ..StepReport::from_record(index, result)
    }
}
