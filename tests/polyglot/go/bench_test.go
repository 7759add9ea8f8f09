package sidekill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

// engines are wazero's two: the compiler (amd64 and arm64) and the portable interpreter.
var engines = []struct {
	name   string
	config func() wazero.RuntimeConfig
}{
	{"compiler", wazero.NewRuntimeConfigCompiler},
	{"interpreter", wazero.NewRuntimeConfigInterpreter},
}

// BenchmarkPlan: one Plan call (alloc, write, plan, read, free) per vector on a warm instance.
func BenchmarkPlan(b *testing.B) {
	vectors := loadVectors(b)
	wasm := wasmBytes(b)
	for _, e := range engines {
		p, err := NewWithConfig(context.Background(), wasm, e.config())
		if err != nil {
			b.Fatalf("%s: %v", e.name, err)
		}
		for _, v := range vectors {
			b.Run(e.name+"/"+v.name, func(b *testing.B) {
				b.SetBytes(int64(len(v.request)))
				for b.Loop() {
					if _, err := p.Plan(v.request); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		p.Close(context.Background())
	}
}

// BenchmarkColdStart: compile the module and instantiate it (New), then Close.
func BenchmarkColdStart(b *testing.B) {
	wasm := wasmBytes(b)
	for _, e := range engines {
		b.Run(e.name, func(b *testing.B) {
			for b.Loop() {
				p, err := NewWithConfig(context.Background(), wasm, e.config())
				if err != nil {
					b.Fatal(err)
				}
				p.Close(context.Background())
			}
		})
	}
	// With a compilation cache shared across runtimes (in memory here; wazero.NewCompilationCacheWithDir
	// keeps it on disk), only the first New compiles.
	b.Run("compiler-cached", func(b *testing.B) {
		cache := wazero.NewCompilationCache()
		defer cache.Close(context.Background())
		config := wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache)
		warm, err := NewWithConfig(context.Background(), wasm, config) // fills the cache
		if err != nil {
			b.Fatal(err)
		}
		warm.Close(context.Background())
		for b.Loop() {
			p, err := NewWithConfig(context.Background(), wasm, config)
			if err != nil {
				b.Fatal(err)
			}
			p.Close(context.Background())
		}
	})
}

// BenchmarkInstantiate: a fresh instance of the already compiled module (what recover does).
func BenchmarkInstantiate(b *testing.B) {
	p := newPolicy(b)
	for b.Loop() {
		p.mod.Close(context.Background())
		if err := p.instantiate(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRuntimes writes the figures of scripts/bench-runtimes as JSON lines, once: per vector
// the median of single Plan calls on a warm instance, and the median cold New (compile +
// instantiate + ABI check, each in a new runtime). bench.sh --jsonl FILE runs it:
//
//	go test -run '^$' -bench '^BenchmarkRuntimes$' -benchtime 1x
//
// Env: SIDEKILL_BENCH_JSONL (the file to append to; required), SIDEKILL_BENCH_ENGINES
// ("compiler", "interpreter" or both, comma-separated; default compiler),
// SIDEKILL_BENCH_WARMUP_MS (per vector, default 100), SIDEKILL_BENCH_MEASURE_MS (per vector,
// default 200; at least 20 calls), SIDEKILL_BENCH_COLD_RUNS (default 10).
func BenchmarkRuntimes(b *testing.B) {
	path := os.Getenv("SIDEKILL_BENCH_JSONL")
	if path == "" {
		b.Skip("SIDEKILL_BENCH_JSONL is not set (bench.sh --jsonl FILE sets it)")
	}
	if b.N > 1 {
		return // run once; go test -benchtime 1x calls it with N = 1 only
	}
	envInt := func(name string, fallback int) int {
		if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
			return v
		}
		return fallback
	}
	warmup := time.Duration(envInt("SIDEKILL_BENCH_WARMUP_MS", 100)) * time.Millisecond
	measure := time.Duration(envInt("SIDEKILL_BENCH_MEASURE_MS", 200)) * time.Millisecond
	coldRuns := envInt("SIDEKILL_BENCH_COLD_RUNS", 10)
	names := []string{"compiler"}
	if v := os.Getenv("SIDEKILL_BENCH_ENGINES"); v != "" {
		names = nil
		for _, name := range bytes.Split([]byte(v), []byte(",")) {
			names = append(names, string(bytes.TrimSpace(name)))
		}
	}

	out, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	emit := func(record map[string]any) {
		line, err := json.Marshal(record)
		if err == nil {
			_, err = fmt.Fprintf(out, "%s\n", line)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	version := "unknown" // test binaries carry no module versions: read go.mod (go test runs here)
	if mod, err := os.ReadFile("go.mod"); err == nil {
		for _, line := range bytes.Split(mod, []byte("\n")) {
			if f := bytes.Fields(line); len(f) >= 2 && string(f[len(f)-2]) == "github.com/tetratelabs/wazero" {
				version = string(f[len(f)-1])
			}
		}
	}

	vectors := loadVectors(b)
	wasm := wasmBytes(b)
	ctx := context.Background()
	for _, name := range names {
		var config func() wazero.RuntimeConfig
		for _, e := range engines {
			if e.name == name {
				config = e.config
			}
		}
		if config == nil {
			b.Fatalf("SIDEKILL_BENCH_ENGINES: unknown engine %q (compiler, interpreter)", name)
		}
		runtimeName := "wazero-" + name
		emit(map[string]any{"runtime": runtimeName, "kind": "meta",
			"version": fmt.Sprintf("wazero %s, %s", version, runtime.Version())})

		// Then the first plan (the first vector) on that new instance, timed apart.
		cold, first := make([]float64, 0, coldRuns), make([]float64, 0, coldRuns)
		for range coldRuns {
			t0 := time.Now()
			p, err := NewWithConfig(ctx, wasm, config())
			elapsed := time.Since(t0)
			if err != nil {
				b.Fatal(err)
			}
			t0 = time.Now()
			_, err = p.Plan(vectors[0].request)
			firstPlan := time.Since(t0)
			p.Close(ctx)
			if err != nil {
				b.Fatal(err)
			}
			cold = append(cold, float64(elapsed.Nanoseconds()))
			first = append(first, float64(firstPlan.Nanoseconds()))
		}
		if len(cold) > 0 {
			slices.Sort(cold)
			slices.Sort(first)
			emit(map[string]any{"runtime": runtimeName, "kind": "cold", "median_ns": cold[len(cold)/2],
				"min_ns": cold[0], "runs": len(cold), "first_plan_ns": first[len(first)/2],
				"first_plan_vector": vectors[0].name,
				"how":               "NewWithConfig: new runtime + CompileModule + InstantiateModule + sidekill_abi_major(), in-process"})
		}

		if name == "compiler" {
			coldCached(b, ctx, wasm, vectors[0], coldRuns, runtimeName, emit)
		}

		p, err := NewWithConfig(ctx, wasm, config())
		if err != nil {
			b.Fatal(err)
		}
		for _, v := range vectors {
			answer, err := p.Plan(v.request)
			if err != nil {
				b.Fatalf("%s: %v", v.name, err)
			}
			for start := time.Now(); time.Since(start) < warmup; {
				p.Plan(v.request)
			}
			samples := make([]float64, 0, 4096)
			for start := time.Now(); len(samples) < 20 || time.Since(start) < measure; {
				t0 := time.Now()
				p.Plan(v.request)
				samples = append(samples, float64(time.Since(t0).Nanoseconds()))
			}
			slices.Sort(samples)
			emit(map[string]any{"runtime": runtimeName, "kind": "plan", "vector": v.name,
				"median_ns": samples[len(samples)/2], "calls": len(samples), "same": bytes.Equal(answer, v.answer)})
		}
		p.Close(ctx)
	}
}

// coldCached: NewWithConfig with wazero's on-disk compilation cache, filled once (untimed) as a
// first process would; then each round a new cache object on the same folder, as a later process
// opens it, and a new runtime that loads the kept machine code instead of compiling.
func coldCached(b *testing.B, ctx context.Context, wasm []byte, first vector, runs int, runtimeName string,
	emit func(map[string]any)) {
	dir := b.TempDir()
	config := func() (wazero.RuntimeConfig, wazero.CompilationCache) {
		cache, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			b.Fatal(err)
		}
		return wazero.NewRuntimeConfigCompiler().WithCompilationCache(cache), cache
	}
	fill, cache := config()
	p, err := NewWithConfig(ctx, wasm, fill)
	if err != nil {
		b.Fatal(err)
	}
	p.Close(ctx)
	cache.Close(ctx)
	cold, plan := make([]float64, 0, runs), make([]float64, 0, runs)
	for range runs {
		t0 := time.Now()
		c, cache := config()
		p, err := NewWithConfig(ctx, wasm, c)
		elapsed := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		t0 = time.Now()
		_, err = p.Plan(first.request)
		firstPlan := time.Since(t0)
		p.Close(ctx)
		cache.Close(ctx)
		if err != nil {
			b.Fatal(err)
		}
		cold = append(cold, float64(elapsed.Nanoseconds()))
		plan = append(plan, float64(firstPlan.Nanoseconds()))
	}
	if len(cold) > 0 {
		slices.Sort(cold)
		slices.Sort(plan)
		emit(map[string]any{"runtime": runtimeName, "kind": "cold-cached", "median_ns": cold[len(cold)/2],
			"min_ns": cold[0], "runs": len(cold), "first_plan_ns": plan[len(plan)/2],
			"first_plan_vector": first.name,
			"how": "NewCompilationCacheWithDir (filled before, untimed) + NewWithConfig: new runtime + " +
				"CompileModule from the cache + InstantiateModule + sidekill_abi_major(), in-process"})
	}
}
