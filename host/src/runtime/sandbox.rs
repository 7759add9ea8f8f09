//! What every store runs under: the epoch ticker, the call's CPU and wall-clock budgets
//! checked at each tick (see [Deadlines](super#deadlines)), and the memory and table limiter.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use wasmtime::{Engine, ResourceLimiter};

use super::Limits;
use crate::error::{Error, Result};

/// Increments the engine's epoch every tick until dropped.
pub(super) struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(super) fn start(engine: Engine, tick: Duration) -> Result<Ticker> {
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
pub(super) const TABLE_ELEMENTS: usize = 100_000;

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
    /// A store's data for calls under `limits`, checked every `tick`.
    pub(super) fn new(limits: &Limits, tick: Duration) -> Sandbox {
        Sandbox {
            memory_limit: limits.memory,
            memory_hit: None,
            deadline_hit: None,
            cpu_budget: limits.timeout,
            wall_budget: limits.wall_timeout,
            tick,
            cpu_mark: None,
            wall_start: Instant::now(),
        }
    }

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
    use crate::runtime::{Config, Runtime};

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
