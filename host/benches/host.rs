//! Host benchmarks (std::time::Instant, no harness):
//! 1. plan through wasmtime vs the native core, per request (target: ratio ≤ 1.5×): every
//!    call runs in a fresh instance (the pristine-state guarantee of issue 17), from the
//!    pooling allocator (the default) and from on-demand allocation (`instance_slots: 0`);
//! 2. the fixed per-call cost: a fresh store instantiated from the `InstancePre` plus two
//!    trivial calls (target ≤ 20 µs);
//! 3. cold load, with and without the precompiled-module cache on disk;
//! 4. hot swap under load: 4 threads plan while the module is swapped 1,000 times;
//!    failed calls, p50/p99/max latency during swaps vs steady;
//! 5. pristine state per call, same run: the host's call (a fresh instance from the pooling
//!    allocator) against the same plan in one instance reused for every call (what the host
//!    did before issue 17; no longer in its API, so made here on wasmtime directly, with the
//!    host's engine), and instantiation alone.
//!
//! Run: `cargo bench -p sidekill --bench host` (add `-- quick` for fewer iterations).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sidekill::{embedded, Config, Policy, PolicyStore, Runtime};
use sidekill_policy::Call;

const REQUESTS: [(&str, &str); 4] = [
    ("istio-job", include_str!("../canaries/istio-job.json")),
    (
        "argo-workflow",
        include_str!("../canaries/argo-workflow.json"),
    ),
    (
        "native-sidecar-pod",
        include_str!("../canaries/native-sidecar-pod.json"),
    ),
    ("bad-request", include_str!("../canaries/bad-request.json")),
];

struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
    n: usize,
}

fn stats(samples: &mut [Duration]) -> Stats {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        p50: at(0.50),
        p99: at(0.99),
        max: samples.last().copied().unwrap_or_default(),
        n: samples.len(),
    }
}

fn time(iterations: usize, mut f: impl FnMut()) -> Stats {
    for _ in 0..iterations.min(50) {
        f();
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        f();
        samples.push(started.elapsed());
    }
    stats(&mut samples)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The module with a custom section appended: the same code, another sha256.
fn variant(module: &[u8], tag: &str) -> Vec<u8> {
    let mut bytes = module.to_vec();
    let mut payload = vec![4];
    payload.extend_from_slice(b"test");
    payload.extend_from_slice(tag.as_bytes());
    bytes.push(0);
    bytes.push(payload.len() as u8);
    bytes.extend_from_slice(&payload);
    bytes
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "quick");
    let iterations = if quick { 300 } else { 3_000 };
    // SIDEKILL_BENCH_POLICY=path.wasm benchmarks another build of the module.
    let (module, origin) = match std::env::var("SIDEKILL_BENCH_POLICY") {
        Ok(path) => (std::fs::read(&path)?, path),
        Err(_) => (embedded::BYTES.to_vec(), "embedded".to_string()),
    };
    let runtime = Runtime::new(Config::default())?;
    let policy = runtime.load(&module)?;
    // No pool: every call maps a new memory. The figure shows what the pool saves.
    let on_demand_runtime = Runtime::new(Config {
        instance_slots: 0,
        ..Config::default()
    })?;
    let on_demand = on_demand_runtime.load(&module)?;
    println!(
        "sidekill host benchmarks ({iterations} iterations; {origin} module, {} bytes, sha256 {})\n",
        module.len(),
        policy.sha256().short()
    );

    println!("1. plan through wasmtime vs the native core, p50 per call");
    println!("   every call in a fresh instance; pooling: the default allocator's slots,");
    println!("   on-demand: a new memory mapped per call (instance_slots = 0)");
    println!(
        "   {:<20} {:>10} {:>10} {:>7} {:>10} {:>7}",
        "request", "native", "pooling", "ratio", "on-demand", "ratio"
    );
    for (name, request) in REQUESTS {
        let native = time(iterations, || {
            std::hint::black_box(sidekill_policy::call(Call::Plan, request.as_bytes()));
        });
        let pooling = time(iterations, || {
            std::hint::black_box(policy.call(Call::Plan, request.as_bytes()).ok());
        });
        let cold = time(iterations, || {
            std::hint::black_box(on_demand.call(Call::Plan, request.as_bytes()).ok());
        });
        let ratio = |d: Duration| d.as_secs_f64() / native.p50.as_secs_f64();
        println!(
            "   {:<20} {:>10} {:>10} {:>6.2}× {:>10} {:>6.2}×",
            name,
            us(native.p50),
            us(pooling.p50),
            ratio(pooling.p50),
            us(cold.p50),
            ratio(cold.p50)
        );
    }

    println!("\n2. fixed per-call cost: new Store + InstancePre::instantiate + 2 trivial calls");
    let fixed = time(iterations * 3, || {
        std::hint::black_box(policy.read_abi().ok());
    });
    println!(
        "   p50 {}  p99 {}  max {}",
        us(fixed.p50),
        us(fixed.p99),
        us(fixed.max)
    );

    println!("\n3. cold load (new Runtime + load; compile or read the disk cache), p50 of 5");
    let dir = tempfile::tempdir()?;
    let load = |config: &Config| -> anyhow::Result<Duration> {
        let started = Instant::now();
        Runtime::new(config.clone())?.load(&module)?;
        Ok(started.elapsed())
    };
    let mut cold = Vec::new();
    for _ in 0..5 {
        cold.push(load(&Config::default())?);
    }
    let cold = stats(&mut cold);
    let cached_config = Config {
        cache_dir: Some(dir.path().to_path_buf()),
        ..Config::default()
    };
    load(&cached_config)?;
    let mut warm = Vec::new();
    for _ in 0..5 {
        warm.push(load(&cached_config)?);
    }
    let warm = stats(&mut warm);
    println!("   compile:          {}", ms(cold.p50));
    println!(
        "   from disk cache:  {}  ({:.0}× faster)",
        ms(warm.p50),
        cold.p50.as_secs_f64() / warm.p50.as_secs_f64()
    );

    pristine(&runtime, &policy, &module, iterations)?;

    println!("\n4. hot swap under load: 4 threads plan `istio-job` continuously");
    let store = Arc::new(PolicyStore::new(runtime.clone(), None, &module, &origin)?);
    let b = variant(&module, "b");
    store.validate(&b)?; // compile once
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let swapping = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (store, stop, failures, samples, swapping) = (
                Arc::clone(&store),
                Arc::clone(&stop),
                Arc::clone(&failures),
                Arc::clone(&samples),
                Arc::clone(&swapping),
            );
            std::thread::spawn(move || {
                let (mut steady, mut during) = (Vec::new(), Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let phase = swapping.load(Ordering::Relaxed);
                    let started = Instant::now();
                    if let Err(e) = store.current().call(Call::Plan, REQUESTS[0].1.as_bytes()) {
                        eprintln!("   failed call: {}", e.report());
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    let elapsed = started.elapsed();
                    if phase {
                        during.push(elapsed)
                    } else {
                        steady.push(elapsed)
                    }
                }
                // A worker that panicked poisons nothing we read afterwards.
                let mut all = samples
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                all.0.extend(steady);
                all.1.extend(during);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(if quick { 1 } else { 3 }));
    swapping.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let mut swap_times = Vec::new();
    for i in 0..1_000 {
        let bytes: &[u8] = if i % 2 == 0 { &b } else { &module };
        let t = Instant::now();
        store.propose(bytes, "bench")?;
        swap_times.push(t.elapsed());
    }
    let swap_total = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let mut all = samples
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let steady = stats(&mut all.0);
    let during = stats(&mut all.1);
    let swaps = stats(&mut swap_times);
    println!(
        "   1000 swaps in {} (validation + canaries each: p50 {}, p99 {})",
        ms(swap_total),
        ms(swaps.p50),
        ms(swaps.p99)
    );
    println!("   failed calls: {}", failures.load(Ordering::Relaxed));
    println!(
        "   {:<14} {:>8} {:>12} {:>12} {:>12}",
        "", "calls", "p50", "p99", "max"
    );
    println!(
        "   {:<14} {:>8} {:>12} {:>12} {:>12}",
        "steady",
        steady.n,
        us(steady.p50),
        us(steady.p99),
        us(steady.max)
    );
    println!(
        "   {:<14} {:>8} {:>12} {:>12} {:>12}",
        "during swaps",
        during.n,
        us(during.p50),
        us(during.p99),
        us(during.max)
    );
    Ok(())
}

/// One instance of the module, reused for every call: the calls a host makes (alloc, copy
/// in, plan, result length, copy out, free, reset), on the host's engine.
struct Reused {
    store: wasmtime::Store<()>,
    memory: wasmtime::Memory,
    alloc: wasmtime::TypedFunc<i32, i32>,
    free: wasmtime::TypedFunc<(i32, i32), ()>,
    plan: wasmtime::TypedFunc<(i32, i32), i32>,
    result_len: wasmtime::TypedFunc<(), i32>,
    reset: wasmtime::TypedFunc<(), ()>,
}

impl Reused {
    fn new(runtime: &Runtime, module: &[u8]) -> wasmtime::Result<Self> {
        let module = wasmtime::Module::new(runtime.engine(), module)?;
        let mut store = wasmtime::Store::new(runtime.engine(), ());
        // The engine interrupts on epochs: a deadline far away, as no call here loops.
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = wasmtime::Instance::new(&mut store, &module, &[])?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| wasmtime::Error::msg("no memory"))?;
        Ok(Reused {
            alloc: instance.get_typed_func(&mut store, "sidekill_alloc")?,
            free: instance.get_typed_func(&mut store, "sidekill_free")?,
            plan: instance.get_typed_func(&mut store, "sidekill_plan")?,
            result_len: instance.get_typed_func(&mut store, "sidekill_result_len")?,
            reset: instance.get_typed_func(&mut store, "sidekill_reset")?,
            memory,
            store,
        })
    }

    fn plan(&mut self, request: &[u8]) -> wasmtime::Result<Vec<u8>> {
        let len = i32::try_from(request.len()).map_err(wasmtime::Error::msg)?;
        let ptr = self.alloc.call(&mut self.store, len.max(1))?;
        self.memory
            .write(&mut self.store, ptr as u32 as usize, request)?;
        let at = self.plan.call(&mut self.store, (ptr, len))? as u32 as usize;
        let n = self.result_len.call(&mut self.store, ())? as u32 as usize;
        let answer = self
            .memory
            .data(&self.store)
            .get(at..at + n)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| wasmtime::Error::msg("an answer outside memory"))?;
        self.free.call(&mut self.store, (ptr, len.max(1)))?;
        self.reset.call(&mut self.store, ())?;
        Ok(answer)
    }
}

fn pristine(
    runtime: &Runtime,
    policy: &Policy,
    module: &[u8],
    iterations: usize,
) -> anyhow::Result<()> {
    println!("\n5. pristine state per call: a fresh instance (pooling) vs one instance reused");
    println!("   instantiate: new Store + InstancePre::instantiate + 2 trivial calls (as 2.)");
    let instantiate = time(iterations, || {
        std::hint::black_box(policy.read_abi().ok());
    });
    let wasm = |e: wasmtime::Error| anyhow::anyhow!("{e:?}");
    let mut reused = Reused::new(runtime, module).map_err(wasm)?;
    println!(
        "   {:<20} {:>10} {:>10} {:>7} {:>12} {:>12}",
        "request", "reused", "fresh", "ratio", "fresh-reused", "instantiate"
    );
    for (name, request) in REQUESTS {
        // The same answer both ways, or the comparison means nothing.
        anyhow::ensure!(
            reused.plan(request.as_bytes()).map_err(wasm)?
                == policy.call(Call::Plan, request.as_bytes())?,
            "{name}: the reused instance answers otherwise"
        );
        let warm = time(iterations, || {
            std::hint::black_box(reused.plan(request.as_bytes()).ok());
        });
        let fresh = time(iterations, || {
            std::hint::black_box(policy.call(Call::Plan, request.as_bytes()).ok());
        });
        println!(
            "   {:<20} {:>10} {:>10} {:>6.2}× {:>12} {:>12}",
            name,
            us(warm.p50),
            us(fresh.p50),
            fresh.p50.as_secs_f64() / warm.p50.as_secs_f64(),
            us(fresh.p50.saturating_sub(warm.p50)),
            us(instantiate.p50)
        );
    }
    Ok(())
}
