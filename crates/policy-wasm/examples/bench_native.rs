//! Benchmark (not a test): plan latency per vector of the native core and of the raw module
//! in wasmtime, and the module's cold compile + instantiate time in wasmtime. The native and
//! wasmtime rows of `scripts/bench-runtimes` (BENCHMARKS.md, "Policy module across runtimes").
//!
//! Run: `cargo run --release -p sidekill-policy-wasm --example bench_native -- [options]`
//!   --warmup-ms N   warm-up per vector before it is timed (default 100)
//!   --measure-ms N  timing window per vector (default 200; at least 20 calls)
//!   --cold-runs N   compile + instantiate rounds (default 10)
//!   --no-epoch      wasmtime's default engine configuration instead of the host's
//!   --jsonl PATH    append one JSON object per figure to PATH (the format of
//!                   scripts/bench-runtimes); a table is printed either way
//! Env: SIDEKILL_WASM (default dist/raw/sidekill_policy.wasm), SIDEKILL_VECTORS_OUT (default
//! dist/vectors: the `<name>.request.json` and `<name>.answer.json` of `dump_vectors`).
//!
//! Native: `sidekill_policy::call(Call::Plan, request)`. wasmtime: one warm instance driven
//! through the raw ABI as the loaders drive it (alloc, write, `sidekill_plan`,
//! `sidekill_result_len`, copy the answer out, free), in an engine configured as sidekill's
//! host configures its own (`epoch_interruption(true)`, the deadline set out of reach).
//! Cold: a new `Engine` (not timed), then `Module::from_binary` + `Store` + `Instance` + one
//! `sidekill_abi_major()` call, timed together; and the same from code serialized beforehand
//! (`Module::deserialize_file`), as the host loads it from its disk cache.

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sidekill_policy::Call;
use wasmtime::{Config, Engine, Instance, Memory, Module, Store, TypedFunc};

struct Options {
    warmup: Duration,
    measure: Duration,
    min_calls: usize,
    cold_runs: usize,
    jsonl: Option<PathBuf>,
    epoch: bool,
}

struct Vector {
    name: String,
    request: Vec<u8>,
    answer: Vec<u8>,
}

fn repo_path(env: &str, relative: &str) -> PathBuf {
    std::env::var_os(env)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join(relative)
        })
}

fn load_vectors(dir: &Path) -> Vec<Vector> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (dump the vectors: cargo run -q -p sidekill-policy --example dump_vectors -- dist/vectors)",
            dir.display()
        )
    });
    let mut vectors: Vec<Vector> = entries
        .filter_map(|entry| {
            let file = entry.ok()?.file_name().into_string().ok()?;
            let name = file.strip_suffix(".request.json")?.to_owned();
            let read = |path: PathBuf| {
                std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            };
            Some(Vector {
                request: read(dir.join(&file)),
                answer: read(dir.join(format!("{name}.answer.json"))),
                name,
            })
        })
        .collect();
    vectors.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(!vectors.is_empty(), "no vectors in {}", dir.display());
    vectors
}

/// One warm instance, driven as the loaders drive it.
struct Wasm {
    store: Store<()>,
    memory: Memory,
    abi_major: TypedFunc<(), i32>,
    alloc: TypedFunc<u32, u32>,
    free: TypedFunc<(u32, u32), ()>,
    result_len: TypedFunc<(), u32>,
    plan: TypedFunc<(u32, u32), u32>,
}

/// The engine as sidekill's host builds it (`host/src/runtime.rs`: epoch interruption on), or
/// wasmtime's default one.
fn engine(epoch: bool) -> Engine {
    let mut config = Config::new();
    config.epoch_interruption(epoch);
    Engine::new(&config).expect("engine")
}

impl Wasm {
    fn new(engine: &Engine, module: &Module) -> Wasm {
        let mut store = Store::new(engine, ());
        // The epoch never advances here (no ticker): with epoch interruption on, no deadline.
        store.set_epoch_deadline(u64::MAX / 2);
        let instance = Instance::new(&mut store, module, &[]).expect("instantiate");
        let memory = instance.get_memory(&mut store, "memory").expect("memory");
        macro_rules! func {
            ($name:literal) => {
                instance
                    .get_typed_func(&mut store, $name)
                    .expect(concat!("export ", $name))
            };
        }
        Wasm {
            abi_major: func!("sidekill_abi_major"),
            alloc: func!("sidekill_alloc"),
            free: func!("sidekill_free"),
            result_len: func!("sidekill_result_len"),
            plan: func!("sidekill_plan"),
            memory,
            store,
        }
    }

    fn abi_major(&mut self) -> i32 {
        self.abi_major.call(&mut self.store, ()).expect("no trap")
    }

    fn plan(&mut self, request: &[u8]) -> Vec<u8> {
        let size = request.len().max(1) as u32; // alloc(0) is 0
        let ptr = self.alloc.call(&mut self.store, size).expect("no trap");
        assert_ne!(ptr, 0, "sidekill_alloc({size}) failed");
        self.memory
            .write(&mut self.store, ptr as usize, request)
            .expect("inside memory");
        let at = self
            .plan
            .call(&mut self.store, (ptr, request.len() as u32))
            .expect("no trap");
        let len = self.result_len.call(&mut self.store, ()).expect("no trap");
        let mut answer = vec![0; len as usize];
        self.memory
            .read(&self.store, at as usize, &mut answer)
            .expect("inside memory");
        self.free
            .call(&mut self.store, (ptr, size))
            .expect("no trap");
        answer
    }
}

/// Median of per-call times (ns): `warmup` of calls, then calls for `measure` and at least
/// `min_calls`.
fn median_ns(options: &Options, mut call: impl FnMut()) -> (f64, usize) {
    let start = Instant::now();
    while start.elapsed() < options.warmup {
        call();
    }
    let mut samples = Vec::with_capacity(1 << 16);
    let start = Instant::now();
    while samples.len() < options.min_calls || start.elapsed() < options.measure {
        let t0 = Instant::now();
        call();
        samples.push(t0.elapsed().as_nanos() as u64);
    }
    samples.sort_unstable();
    (samples[samples.len() / 2] as f64, samples.len())
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

struct Sink {
    file: Option<std::fs::File>,
}

impl Sink {
    fn line(&mut self, line: String) {
        if let Some(file) = &mut self.file {
            writeln!(file, "{line}").expect("write the jsonl file");
        }
    }

    fn plan(&mut self, runtime: &str, vector: &Vector, ns: f64, calls: usize, same: bool) {
        self.line(format!(
            r#"{{"runtime":{},"kind":"plan","vector":{},"median_ns":{ns:.0},"calls":{calls},"same":{same}}}"#,
            json_string(runtime),
            json_string(&vector.name),
        ));
    }
}

fn parse_options() -> Options {
    let mut options = Options {
        warmup: Duration::from_millis(100),
        measure: Duration::from_millis(200),
        min_calls: 20,
        cold_runs: 10,
        jsonl: None,
        epoch: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        let ms = |v: String| Duration::from_millis(v.parse().expect("a number of milliseconds"));
        match arg.as_str() {
            "--warmup-ms" => options.warmup = ms(value()),
            "--measure-ms" => options.measure = ms(value()),
            "--min-calls" => options.min_calls = value().parse().expect("a count"),
            "--cold-runs" => options.cold_runs = value().parse().expect("a count"),
            "--jsonl" => options.jsonl = Some(PathBuf::from(value())),
            "--no-epoch" => options.epoch = false,
            _ => panic!("unknown argument {arg} (see the example's doc comment)"),
        }
    }
    options
}

/// Cold from compiled code kept by an earlier process, as the host's disk cache keeps it
/// (`host/src/runtime/disk.rs`): the module serialized to a file once (untimed), then each round
/// a new engine, `Module::deserialize_file` + `Store` + `Instance` + the ABI check, and the first
/// plan timed apart.
fn cold_cached(options: &Options, wasm: &[u8], first_vector: &Vector, sink: &mut Sink) {
    let path = std::env::temp_dir().join(format!("sidekill-bench-{}.cwasm", std::process::id()));
    let code = Module::from_binary(&engine(options.epoch), wasm)
        .and_then(|module| module.serialize())
        .expect("compile and serialize");
    std::fs::write(&path, code).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut cold, mut first) = (Vec::new(), Vec::new());
    for _ in 0..options.cold_runs {
        let engine = engine(options.epoch);
        let t0 = Instant::now();
        // SAFETY: the file is the serialization this process wrote just above, for an engine
        // configured the same way; nothing else writes it.
        let module = unsafe { Module::deserialize_file(&engine, &path) }.expect("deserialize");
        let mut instance = Wasm::new(&engine, &module);
        assert_eq!(instance.abi_major(), 1);
        cold.push(t0.elapsed().as_nanos() as u64);
        let t0 = Instant::now();
        black_box(instance.plan(&first_vector.request));
        first.push(t0.elapsed().as_nanos() as u64);
    }
    let _ = std::fs::remove_file(&path);
    cold.sort_unstable();
    first.sort_unstable();
    if let Some(&median) = cold.get(cold.len() / 2) {
        let first_plan = first[first.len() / 2];
        println!(
            "wasmtime cold from serialized code, {} rounds: median {:.3} ms; then a first plan {:.3} ms",
            cold.len(),
            median as f64 / 1e6,
            first_plan as f64 / 1e6
        );
        sink.line(format!(
            r#"{{"runtime":"wasmtime","kind":"cold-cached","median_ns":{median},"min_ns":{},"runs":{},"first_plan_ns":{first_plan},"first_plan_vector":{},"how":"new Engine (untimed), then Module::deserialize_file of code serialized once before (the host's disk cache) + Store + Instance + sidekill_abi_major(), in-process"}}"#,
            cold[0],
            cold.len(),
            json_string(&first_vector.name)
        ));
    }
}

fn main() {
    let options = parse_options();
    let wasm_path = repo_path("SIDEKILL_WASM", "dist/raw/sidekill_policy.wasm");
    let vectors_dir = repo_path("SIDEKILL_VECTORS_OUT", "dist/vectors");
    let wasm = std::fs::read(&wasm_path)
        .unwrap_or_else(|e| panic!("{}: {e} (scripts/build-wasm raw)", wasm_path.display()));
    let vectors = load_vectors(&vectors_dir);
    let mut sink = Sink {
        file: options.jsonl.as_ref().map(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        }),
    };
    println!(
        "module {} ({} bytes); {} vectors from {}",
        wasm_path.display(),
        wasm.len(),
        vectors.len(),
        vectors_dir.display()
    );

    // Cold: compile + instantiate + the ABI check, each round in a new engine.
    // Then the first plan (the first vector) on that new instance, timed apart.
    let (mut cold, mut first) = (Vec::new(), Vec::new());
    for _ in 0..options.cold_runs {
        let engine = engine(options.epoch);
        let t0 = Instant::now();
        let module = Module::from_binary(&engine, &wasm).expect("compile");
        let mut instance = Wasm::new(&engine, &module);
        assert_eq!(instance.abi_major(), 1);
        cold.push(t0.elapsed().as_nanos() as u64);
        let t0 = Instant::now();
        black_box(instance.plan(&vectors[0].request));
        first.push(t0.elapsed().as_nanos() as u64);
    }
    cold.sort_unstable();
    first.sort_unstable();
    if let Some(&median) = cold.get(cold.len() / 2) {
        let first_plan = first[first.len() / 2];
        println!(
            "wasmtime cold compile + instantiate, {} rounds: median {:.2} ms, min {:.2} ms; then a first plan {:.3} ms",
            cold.len(),
            median as f64 / 1e6,
            cold[0] as f64 / 1e6,
            first_plan as f64 / 1e6
        );
        sink.line(format!(
            r#"{{"runtime":"wasmtime","kind":"cold","median_ns":{median},"min_ns":{},"runs":{},"first_plan_ns":{first_plan},"first_plan_vector":{},"how":"new Engine (untimed), then Module::from_binary + Store + Instance + sidekill_abi_major(), in-process"}}"#,
            cold[0],
            cold.len(),
            json_string(&vectors[0].name)
        ));
    }

    cold_cached(&options, &wasm, &vectors[0], &mut sink);

    let engine = engine(options.epoch);
    let module = Module::from_binary(&engine, &wasm).expect("compile");
    let mut instance = Wasm::new(&engine, &module);
    println!(
        "plan latency, median per vector (µs): {} ms warm-up, {} ms window",
        options.warmup.as_millis(),
        options.measure.as_millis()
    );
    println!(
        "  {:44} {:>9} {:>9} {:>7}",
        "vector", "native", "wasmtime", "ratio"
    );
    let (mut sum_native, mut sum_wasm, mut differ) = (0.0, 0.0, 0);
    for vector in &vectors {
        let request = vector.request.as_slice();
        let native_same = sidekill_policy::call(Call::Plan, request) == vector.answer;
        let (native, native_calls) = median_ns(&options, || {
            black_box(sidekill_policy::call(Call::Plan, black_box(request)));
        });
        sink.plan("native", vector, native, native_calls, native_same);

        let wasm_same = instance.plan(request) == vector.answer;
        let (wasm, wasm_calls) = median_ns(&options, || {
            black_box(instance.plan(black_box(request)));
        });
        sink.plan("wasmtime", vector, wasm, wasm_calls, wasm_same);

        differ += usize::from(!native_same) + usize::from(!wasm_same);
        sum_native += native;
        sum_wasm += wasm;
        println!(
            "  {:44} {:9.2} {:9.2} {:6.2}x{}",
            vector.name,
            native / 1e3,
            wasm / 1e3,
            wasm / native,
            if native_same && wasm_same {
                ""
            } else {
                "  DIFFERS from the dumped answer"
            }
        );
    }
    let n = vectors.len() as f64;
    println!(
        "  mean over {} vectors: native {:.2} µs, wasmtime {:.2} µs, ratio {:.2}x{}",
        vectors.len(),
        sum_native / n / 1e3,
        sum_wasm / n / 1e3,
        sum_wasm / sum_native,
        if differ == 0 {
            String::new()
        } else {
            format!("; {differ} answers DIFFER")
        }
    );
}
