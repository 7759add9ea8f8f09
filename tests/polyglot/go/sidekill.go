// Package sidekill runs sidekill's policy module (the raw JSON ABI of docs/ABI.md) in wazero.
//
// Copy this file: it needs only github.com/tetratelabs/wazero. The module is compiled once
// and instantiated with no host imports; every method sends bytes in and returns the
// module's answer envelope, {"ok": ...} or {"error": {"code", "message", "path"?}}, as it
// came. A Go error means the host side failed (no buffer, a trap), never a bad request.
//
//	p, err := sidekill.New(ctx, wasmBytes)
//	defer p.Close(ctx)
//	answer, err := p.Plan([]byte(`{"object": {...}, "facts": {}}`))
package sidekill

import (
	"context"
	"fmt"
	"sync"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// ABIMajor is the module ABI major version this loader speaks.
const ABIMajor = 1

var exports = []string{"sidekill_abi_major", "sidekill_alloc", "sidekill_free", "sidekill_reset",
	"sidekill_result_len", "sidekill_plan", "sidekill_classify", "sidekill_matrix", "sidekill_policy_info"}

// Policy is one instance of the module. Calls are serialised, so it is safe for concurrent use.
type Policy struct {
	mu       sync.Mutex
	runtime  wazero.Runtime
	compiled wazero.CompiledModule
	mod      api.Module
	fn       map[string]api.Function
}

// New compiles wasm, checks it imports nothing, instantiates it and checks its ABI major version.
func New(ctx context.Context, wasm []byte) (*Policy, error) {
	return NewWithConfig(ctx, wasm, wazero.NewRuntimeConfig()) // the compiler where supported
}

// NewWithConfig is New with a runtime configuration (say, the interpreter or a compilation cache).
func NewWithConfig(ctx context.Context, wasm []byte, config wazero.RuntimeConfig) (*Policy, error) {
	p := &Policy{runtime: wazero.NewRuntimeWithConfig(ctx, config)}
	compiled, err := p.runtime.CompileModule(ctx, wasm)
	if err == nil && len(compiled.ImportedFunctions())+len(compiled.ImportedMemories()) > 0 {
		err = fmt.Errorf("the module imports %d functions and %d memories; it must import nothing",
			len(compiled.ImportedFunctions()), len(compiled.ImportedMemories()))
	}
	if p.compiled = compiled; err == nil {
		err = p.instantiate(ctx)
	}
	if err != nil {
		p.runtime.Close(ctx)
		return nil, fmt.Errorf("sidekill: %w", err)
	}
	return p, nil
}

func (p *Policy) instantiate(ctx context.Context) error {
	// An empty name lets one runtime hold several instances (New after a trap).
	mod, err := p.runtime.InstantiateModule(ctx, p.compiled, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		return err
	}
	p.mod, p.fn = mod, map[string]api.Function{}
	for _, name := range exports {
		if p.fn[name] = mod.ExportedFunction(name); p.fn[name] == nil {
			return fmt.Errorf("the module does not export %s", name)
		}
	}
	if mod.Memory() == nil {
		return fmt.Errorf("the module does not export its memory")
	}
	if major, err := p.fn["sidekill_abi_major"].Call(ctx); err != nil || major[0] != ABIMajor {
		return fmt.Errorf("sidekill_abi_major() = %v (error %v); this loader speaks %d", major, err, ABIMajor)
	}
	return nil
}

// Plan answers a request {"object": <Kubernetes object>, "facts": {...}} with a termination plan.
func (p *Policy) Plan(request []byte) ([]byte, error) { return p.send("sidekill_plan", request) }

// Classify answers a request with the classification of the object's containers.
func (p *Policy) Classify(request []byte) ([]byte, error) {
	return p.send("sidekill_classify", request)
}

// Matrix returns the support matrix.
func (p *Policy) Matrix() ([]byte, error) { return p.lockedCall("sidekill_matrix") }

// PolicyInfo returns {"ok":{"name","version","features","presetsHash"}}.
func (p *Policy) PolicyInfo() ([]byte, error) { return p.lockedCall("sidekill_policy_info") }

// Close frees the runtime and everything compiled or instantiated in it.
func (p *Policy) Close(ctx context.Context) error { return p.runtime.Close(ctx) }

// send copies request into a module buffer, calls fn on it, copies the answer out and frees the buffer.
func (p *Policy) send(fn string, request []byte) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx := context.Background()
	n := uint64(len(request))
	// alloc(0) is 0, so an empty request gets a 1-byte buffer: the module then answers invalid_json.
	ptr, err := p.fn["sidekill_alloc"].Call(ctx, max(n, 1))
	if err != nil {
		return nil, p.recover(ctx, err)
	}
	if ptr[0] == 0 {
		return nil, fmt.Errorf("sidekill: sidekill_alloc(%d) returned 0: over 64 MiB, or out of memory", n)
	}
	if !p.mod.Memory().Write(uint32(ptr[0]), request) {
		p.fn["sidekill_reset"].Call(ctx) // frees every buffer; no answer was pending
		return nil, fmt.Errorf("sidekill: buffer [%d, +%d) is outside memory", ptr[0], n)
	}
	answer, err := p.call(ctx, fn, ptr[0], n)
	if err == nil {
		_, err = p.fn["sidekill_free"].Call(ctx, ptr[0], n)
	}
	if err != nil {
		return nil, p.recover(ctx, err)
	}
	return answer, nil
}

func (p *Policy) lockedCall(fn string) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ctx := context.Background()
	answer, err := p.call(ctx, fn)
	if err != nil {
		return nil, p.recover(ctx, err)
	}
	return answer, nil
}

// call calls fn, which returns the answer's address, and copies the answer out of memory.
func (p *Policy) call(ctx context.Context, fn string, args ...uint64) ([]byte, error) {
	at, err := p.fn[fn].Call(ctx, args...)
	if err != nil {
		return nil, err
	}
	size, err := p.fn["sidekill_result_len"].Call(ctx)
	if err != nil {
		return nil, err
	}
	// Read after the call: memory may have grown. The view is copied before the next call.
	view, ok := p.mod.Memory().Read(uint32(at[0]), uint32(size[0]))
	if !ok {
		return nil, fmt.Errorf("answer [%d, +%d) is outside memory", at[0], size[0])
	}
	return append([]byte(nil), view...), nil
}

// recover replaces an instance that trapped (its state may be half-updated) with a fresh one.
func (p *Policy) recover(ctx context.Context, cause error) error {
	p.mod.Close(ctx)
	if err := p.instantiate(ctx); err != nil {
		return fmt.Errorf("sidekill: %w; re-instantiating failed too: %v", cause, err)
	}
	return fmt.Errorf("sidekill: %w (the instance was replaced)", cause)
}
