package sidekill

import (
	"bytes"
	"testing"
)

// TestVectors sends every shared vector's request through one instance of the module, with
// each wazero engine, and requires its answer to equal the native core's as canonical JSON.
func TestVectors(t *testing.T) {
	vectors := loadVectors(t)
	for _, e := range engines {
		t.Run(e.name, func(t *testing.T) { testVectors(t, newPolicyWith(t, e.config()), vectors) })
	}
}

func testVectors(t *testing.T, p *Policy, vectors []vector) {
	rawSame := 0
	for _, v := range vectors {
		t.Run(v.name, func(t *testing.T) {
			answer, err := p.Plan(v.request)
			if err != nil {
				t.Fatalf("vector %s: Plan: %v", v.name, err)
			}
			if diff := mismatch(v, answer); diff != "" {
				t.Fatalf("vector %s differs from the native answer: %s", v.name, diff)
			}
			if bytes.Equal(answer, bytes.TrimSpace(v.answer)) {
				rawSame++
			}
		})
	}
	t.Logf("%d vectors from %s; %d also byte-identical before canonicalising", len(vectors), vectorsPath(), rawSame)
	if t.Failed() {
		t.Logf("when many vectors differ, %s may be older than the core that dumped the vectors: rebuild it", wasmPath())
	}
}

// TestVectorsOnFreshInstances checks that each vector answers the same on a fresh instance
// (no earlier call) and on a second call, so no answer depends on the instance's history.
func TestVectorsOnFreshInstances(t *testing.T) {
	p := newPolicy(t)
	for _, v := range loadVectors(t) {
		p.mod.Close(t.Context())
		if err := p.instantiate(t.Context()); err != nil {
			t.Fatal(err)
		}
		first, err := p.Plan(v.request)
		if err != nil {
			t.Fatalf("vector %s: Plan: %v", v.name, err)
		}
		if diff := mismatch(v, first); diff != "" {
			t.Errorf("vector %s on a fresh instance differs from the native answer: %s", v.name, diff)
		}
		again, err := p.Plan(v.request)
		if err != nil {
			t.Fatalf("vector %s: second Plan: %v", v.name, err)
		}
		if !bytes.Equal(first, again) {
			t.Errorf("vector %s: a second call on the same instance answered differently", v.name)
		}
	}
}
