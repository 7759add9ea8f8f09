package sidekill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
)

// The module and the vectors, from the environment or relative to this folder (tests/polyglot/go).
func wasmPath() string    { return envOr("SIDEKILL_WASM", "../../../dist/raw/sidekill_policy.wasm") }
func vectorsPath() string { return envOr("SIDEKILL_VECTORS_OUT", "../../../dist/vectors") }

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// wasmBytes reads the module, failing (never skipping) when it is missing.
func wasmBytes(tb testing.TB) []byte {
	tb.Helper()
	wasm, err := os.ReadFile(wasmPath())
	if err != nil {
		tb.Fatalf("the policy module is missing (set SIDEKILL_WASM, or build dist/raw/sidekill_policy.wasm): %v", err)
	}
	return wasm
}

// newPolicy instantiates the module once for a test, closed when the test ends.
func newPolicy(tb testing.TB) *Policy {
	tb.Helper()
	return newPolicyWith(tb, wazero.NewRuntimeConfig())
}

func newPolicyWith(tb testing.TB, config wazero.RuntimeConfig) *Policy {
	tb.Helper()
	p, err := NewWithConfig(context.Background(), wasmBytes(tb), config)
	if err != nil {
		tb.Fatalf("loading %s: %v", wasmPath(), err)
	}
	tb.Cleanup(func() { p.Close(context.Background()) })
	return p
}

type vector struct {
	name            string
	request, answer []byte
}

// loadVectors reads every <name>.request.json with its <name>.answer.json. A missing folder,
// an unpaired file or an empty folder fails the test: a run that checks nothing must not pass.
func loadVectors(tb testing.TB) []vector {
	tb.Helper()
	dir := vectorsPath()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatalf("the vectors folder is missing (set SIDEKILL_VECTORS_OUT, or run "+
			"`cargo run -q -p sidekill-policy --example dump_vectors -- dist/vectors`): %v", err)
	}
	files := map[string]bool{}
	for _, e := range entries {
		files[e.Name()] = true
	}
	var vectors []vector
	for _, e := range entries {
		name, isRequest := strings.CutSuffix(e.Name(), ".request.json")
		if !isRequest {
			if stem, isAnswer := strings.CutSuffix(e.Name(), ".answer.json"); isAnswer && !files[stem+".request.json"] {
				tb.Errorf("vector %s: %s has no %s.request.json", stem, e.Name(), stem)
			}
			continue
		}
		request, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			tb.Fatalf("vector %s: %v", name, err)
		}
		answer, err := os.ReadFile(filepath.Join(dir, name+".answer.json"))
		if err != nil {
			tb.Errorf("vector %s: no answer: %v", name, err)
			continue
		}
		vectors = append(vectors, vector{name, request, answer})
	}
	if len(vectors) == 0 {
		tb.Fatalf("no vectors in %s: expected <name>.request.json and <name>.answer.json pairs", dir)
	}
	sort.Slice(vectors, func(i, j int) bool { return vectors[i].name < vectors[j].name })
	return vectors
}

// decode parses JSON keeping numbers as written, so 1 and 1.0 stay different.
func decode(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := d.Token(); err == nil {
		return nil, fmt.Errorf("trailing data after the JSON document")
	}
	return v, nil
}

func marshal(v any) []byte {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetEscapeHTML(false)
	e.Encode(v) // cannot fail: v came from the decoder
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// firstDiff names the first path ($.ok.subjects[0].role) where want and got differ, with both values.
func firstDiff(path string, want, got any) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			break
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			wv, inW := w[k]
			gv, inG := g[k]
			switch {
			case !inW:
				return fmt.Sprintf("%s.%s: not expected, got %s", path, k, short(gv))
			case !inG:
				return fmt.Sprintf("%s.%s: missing, want %s", path, k, short(wv))
			}
			if d := firstDiff(path+"."+k, wv, gv); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok {
			break
		}
		for i := 0; i < len(w) && i < len(g); i++ {
			if d := firstDiff(fmt.Sprintf("%s[%d]", path, i), w[i], g[i]); d != "" {
				return d
			}
		}
		if len(w) != len(g) {
			return fmt.Sprintf("%s: want %d elements, got %d", path, len(w), len(g))
		}
		return ""
	}
	if ws, gs := marshal(want), marshal(got); !bytes.Equal(ws, gs) {
		return fmt.Sprintf("%s: want %s, got %s", path, short(want), short(got))
	}
	return ""
}

func short(v any) string {
	s := string(marshal(v))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// mismatch is "" when answer equals the vector's native answer as canonical JSON, else where
// and how they first differ.
func mismatch(v vector, answer []byte) string {
	want, err := decode(v.answer)
	if err != nil {
		return fmt.Sprintf("%s.answer.json is not JSON: %v", v.name, err)
	}
	got, err := decode(answer)
	if err != nil {
		return fmt.Sprintf("the module's answer is not JSON: %v: %.300s", err, answer)
	}
	if bytes.Equal(marshal(want), marshal(got)) {
		return ""
	}
	return "first difference at " + firstDiff("$", want, got)
}
