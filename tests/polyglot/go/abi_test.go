package sidekill

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
)

// raw calls an export with arguments of our choosing, as a careless host could.
func raw(t *testing.T, p *Policy, fn string, args ...uint64) []byte {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	answer, err := p.call(context.Background(), fn, args...)
	if err != nil {
		t.Fatalf("%s%v trapped: %v", fn, args, err)
	}
	return answer
}

// wantError requires an error envelope with code, a message, and nothing else.
func wantError(t *testing.T, answer []byte, code string) {
	t.Helper()
	var envelope struct {
		Ok    json.RawMessage `json:"ok"`
		Error *struct {
			Code    string  `json:"code"`
			Message string  `json:"message"`
			Path    *string `json:"path"`
		} `json:"error"`
	}
	if err := json.Unmarshal(answer, &envelope); err != nil {
		t.Fatalf("the answer is not a JSON envelope: %v\n%.300s", err, answer)
	}
	if envelope.Error == nil || envelope.Ok != nil {
		t.Fatalf("want an error envelope with code %s, got %.300s", code, answer)
	}
	if envelope.Error.Code != code || envelope.Error.Message == "" {
		t.Fatalf("want code %s and a message, got %s", code, answer)
	}
}

// wantUsable requires the instance to answer a good request as the native core does.
func wantUsable(t *testing.T, p *Policy, good vector) {
	t.Helper()
	answer, err := p.Plan(good.request)
	if err != nil {
		t.Fatalf("the good call after the bad one failed: %v", err)
	}
	if diff := mismatch(good, answer); diff != "" {
		t.Fatalf("the good call after the bad one (vector %s) differs from the native answer: %s", good.name, diff)
	}
}

// TestBadInput: every bad request is answered with an error envelope, never a trap, and the
// same instance then answers a good request correctly.
func TestBadInput(t *testing.T) {
	good := loadVectors(t)[0]
	p := newPolicy(t)
	cases := []struct {
		name, code string
		send       func(t *testing.T) []byte
	}{
		{"invalid UTF-8", "invalid_utf8", func(t *testing.T) []byte {
			return must(t)(p.Plan([]byte("{\"object\":{\"kind\":\"Pod\",\"metadata\":{\"name\":\"\xff\xfe\"}},\"facts\":{}}")))
		}},
		{"invalid UTF-8 to classify", "invalid_utf8", func(t *testing.T) []byte {
			return must(t)(p.Classify([]byte("{\"object\":\"\xc3\x28\"}")))
		}},
		{"truncated JSON", "invalid_json", func(t *testing.T) []byte {
			return must(t)(p.Plan(good.request[:len(good.request)/2]))
		}},
		{"empty request", "invalid_json", func(t *testing.T) []byte {
			return must(t)(p.Plan(nil))
		}},
		{"50 MB request", "request_too_large", func(t *testing.T) []byte {
			big := bytes.Repeat([]byte(" "), 50_000_000)
			copy(big, good.request)
			answer := must(t)(p.Plan(big))
			if size := p.mod.Memory().Size(); size < 50_000_000 {
				t.Fatalf("memory is %d bytes: the 50 MB buffer was never allocated", size)
			}
			return answer
		}},
		{"pointer past the end of memory", "bad_pointer", func(t *testing.T) []byte {
			ptr := allocRaw(t, p, 64)
			defer freeRaw(t, p, ptr, 64)
			wantError(t, raw(t, p, "sidekill_plan", 0xFFFF_FF00, 0x1000), "bad_pointer")
			wantError(t, raw(t, p, "sidekill_plan", ptr, 65), "bad_pointer") // one byte past the buffer
			return raw(t, p, "sidekill_plan", uint64(p.mod.Memory().Size())-8, 64)
		}},
		{"length past the buffer, within 8 MiB", "bad_pointer", func(t *testing.T) []byte {
			ptr := allocRaw(t, p, 64)
			defer freeRaw(t, p, ptr, 64)
			return raw(t, p, "sidekill_classify", ptr+32, 8<<20)
		}},
		{"freed buffer", "bad_pointer", func(t *testing.T) []byte {
			ptr := allocRaw(t, p, 64)
			freeRaw(t, p, ptr, 64)
			return raw(t, p, "sidekill_plan", ptr, 16)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantError(t, c.send(t), c.code)
			wantUsable(t, p, good)
		})
	}
}

// TestCallBeforeAlloc: a plan or classify call on a fresh instance, before any sidekill_alloc,
// is answered bad_pointer; then the instance works.
func TestCallBeforeAlloc(t *testing.T) {
	good := loadVectors(t)[0]
	for _, fn := range []string{"sidekill_plan", "sidekill_classify"} {
		t.Run(fn, func(t *testing.T) {
			p := newPolicy(t)
			wantError(t, raw(t, p, fn, 1024, 16), "bad_pointer")
			wantError(t, raw(t, p, fn, 0, 0), "bad_pointer")
			wantUsable(t, p, good)
		})
	}
}

func allocRaw(t *testing.T, p *Policy, n uint64) uint64 {
	t.Helper()
	ptr, err := p.fn["sidekill_alloc"].Call(context.Background(), n)
	if err != nil || ptr[0] == 0 {
		t.Fatalf("sidekill_alloc(%d) = %v, %v", n, ptr, err)
	}
	return ptr[0]
}

func freeRaw(t *testing.T, p *Policy, ptr, n uint64) {
	t.Helper()
	if _, err := p.fn["sidekill_free"].Call(context.Background(), ptr, n); err != nil {
		t.Fatalf("sidekill_free(%d, %d): %v", ptr, n, err)
	}
}

func must(t *testing.T) func([]byte, error) []byte {
	return func(answer []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatalf("the loader failed where the module should answer: %v", err)
		}
		return answer
	}
}

// TestNoImports: the module imports nothing, so it runs with an empty import object.
func TestNoImports(t *testing.T) {
	ctx := context.Background()
	wasm := wasmBytes(t)
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	compiled, err := r.CompileModule(ctx, wasm)
	if err != nil {
		t.Fatalf("wazero refused the module: %v", err)
	}
	if f := compiled.ImportedFunctions(); len(f) != 0 {
		module, name, _ := f[0].Import()
		t.Errorf("the module imports %d functions, first %s.%s", len(f), module, name)
	}
	if m := compiled.ImportedMemories(); len(m) != 0 {
		t.Errorf("the module imports %d memories", len(m))
	}
	// wazero lists no imported tables or globals, so read the import section itself.
	if n, err := importCount(wasm); err != nil || n != 0 {
		t.Errorf("the import section declares %d imports (%v)", n, err)
	}
	for _, name := range exports {
		if _, ok := compiled.ExportedFunctions()[name]; !ok {
			t.Errorf("the module does not export %s", name)
		}
	}
	if _, ok := compiled.ExportedMemories()["memory"]; !ok {
		t.Errorf("the module does not export memory")
	}
}

// importCount reads the count of the import section (id 2) of a binary module; 0 when it has none.
func importCount(wasm []byte) (uint64, error) {
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return 0, errors.New("not a wasm binary")
	}
	for rest := wasm[8:]; len(rest) > 0; {
		id := rest[0]
		size, n := binary.Uvarint(rest[1:])
		if n <= 0 || uint64(len(rest)-1-n) < size {
			return 0, fmt.Errorf("bad section header")
		}
		body := rest[1+n : 1+n+int(size)]
		if id == 2 {
			count, _ := binary.Uvarint(body)
			return count, nil
		}
		rest = rest[1+n+int(size):]
	}
	return 0, nil
}

// TestInfoAndMatrix: the calls without a request answer ok envelopes.
func TestInfoAndMatrix(t *testing.T) {
	p := newPolicy(t)
	info := must(t)(p.PolicyInfo())
	var envelope struct {
		Ok struct {
			Name, Version, PresetsHash string
			Features                   []string
		}
	}
	if err := json.Unmarshal(info, &envelope); err != nil || envelope.Ok.Name == "" ||
		envelope.Ok.Version == "" || envelope.Ok.PresetsHash == "" || len(envelope.Ok.Features) == 0 {
		t.Errorf("PolicyInfo: %v: %s", err, info)
	}
	matrix := must(t)(p.Matrix())
	var ok struct{ Ok json.RawMessage }
	if err := json.Unmarshal(matrix, &ok); err != nil || len(ok.Ok) == 0 {
		t.Errorf("Matrix: %v: %.300s", err, matrix)
	}
	for _, v := range loadVectors(t) {
		answer := must(t)(p.Classify(v.request))
		if _, err := decode(answer); err != nil {
			t.Errorf("Classify(%s) is not JSON: %v", v.name, err)
		}
	}
}

// TestBuffersAreFreed: many calls on one instance do not grow its memory.
func TestBuffersAreFreed(t *testing.T) {
	good := loadVectors(t)[0]
	p := newPolicy(t)
	for range 20 {
		wantUsable(t, p, good)
	}
	size := p.mod.Memory().Size()
	for range 300 {
		wantUsable(t, p, good)
	}
	if grown := p.mod.Memory().Size(); grown != size {
		t.Errorf("memory grew from %d to %d bytes over 300 calls: a buffer leaks", size, grown)
	}
}

// TestConcurrentCalls: a Policy serialises calls from many goroutines.
func TestConcurrentCalls(t *testing.T) {
	good := loadVectors(t)[0]
	p := newPolicy(t)
	var wg sync.WaitGroup
	errs := make(chan error, 80)
	for range 8 {
		wg.Go(func() {
			for range 10 {
				answer, err := p.Plan(good.request)
				if err != nil {
					errs <- err
				} else if diff := mismatch(good, answer); diff != "" {
					errs <- fmt.Errorf("vector %s: %s", good.name, diff)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestRecoverReplacesInstance: after a host-side failure the loader works on a fresh instance.
func TestRecoverReplacesInstance(t *testing.T) {
	good := loadVectors(t)[0]
	p := newPolicy(t)
	before := p.mod
	if err := p.recover(context.Background(), errors.New("a trap")); err == nil {
		t.Fatal("recover returned no error")
	}
	if p.mod == before {
		t.Fatal("recover kept the old instance")
	}
	wantUsable(t, p, good)
}
