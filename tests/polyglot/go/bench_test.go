package sidekill

import (
	"context"
	"testing"

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
