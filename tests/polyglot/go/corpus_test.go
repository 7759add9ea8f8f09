package sidekill

// Issue 17: every module of the hostile corpus (host/tests/modules/corpus.json) loaded by this
// loader: each gives a clean error, an answer, or is stopped by this test's bound, and never
// takes the test process down.
//
// The loader's own bounds: none for time (it calls with context.Background(), so a module
// that loops, in its start function or in a call, runs for ever) and, for memory, whatever
// the caller's wazero.RuntimeConfig says (NewWithConfig; wazero's default lets a memory grow
// to 4 GiB). So each module runs in a child process (this test binary again) that loads it
// with WithMemoryLimitPages(4096), 256 MiB, and that this test stops after 10 s of wall-clock
// time; a child stopped by it is a timeout, which is what this loader does with a module that
// never returns.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
)

const corpusDir = "../../../host/tests/modules"

// The modules that never return under this loader: it has no deadline.
var corpusHangs = map[string]bool{"loop_plan.wasm": true, "grow_plan.wasm": true, "start_loop.wasm": true}

type corpusManifest struct {
	Request json.RawMessage `json:"request"`
	Modules []struct {
		File string `json:"file"`
	} `json:"modules"`
}

func TestCorpus(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(corpusDir, "corpus.json"))
	if err != nil {
		t.Fatal(err)
	}
	var manifest corpusManifest
	if err := json.Unmarshal(data, &manifest); err != nil {
		t.Fatal(err)
	}
	for _, m := range manifest.Modules {
		if m.File == "embedded" {
			continue
		}
		t.Run(m.File, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestCorpusChild$")
			cmd.Env = append(os.Environ(), "SIDEKILL_CORPUS_MODULE="+filepath.Join(corpusDir, m.File))
			cmd.Stdin = bytes.NewReader(manifest.Request)
			var out, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				if !corpusHangs[m.File] {
					t.Fatalf("%s ran past 10 s: the loader has no deadline", m.File)
				}
				return
			}
			if corpusHangs[m.File] {
				t.Fatalf("%s returned: %s %s", m.File, out.String(), stderr.String())
			}
			if err != nil {
				t.Fatalf("%s: the child failed: %v\n%s", m.File, err, stderr.String())
			}
			var outcome struct{ Outcome string }
			// The child's first line; `go test` prints its verdict after it.
			line, _, _ := bytes.Cut(out.Bytes(), []byte("\n"))
			if err := json.Unmarshal(line, &outcome); err != nil {
				t.Fatalf("%s: no outcome line: %q", m.File, out.String())
			}
			switch outcome.Outcome {
			case "refused-at-load", "call-fails", "answers":
			default:
				t.Fatalf("%s: outcome %q", m.File, outcome.Outcome)
			}
		})
	}
}

// TestCorpusChild loads one corpus module and plans the request on standard input; it runs
// only as TestCorpus's child.
func TestCorpusChild(t *testing.T) {
	path := os.Getenv("SIDEKILL_CORPUS_MODULE")
	if path == "" {
		t.Skip("a child of TestCorpus only")
	}
	say := func(outcome string, err error) {
		msg := ""
		if err != nil {
			msg = err.Error()
			if len(msg) > 200 {
				msg = msg[:200]
			}
		}
		line, _ := json.Marshal(map[string]string{"outcome": outcome, "error": msg})
		os.Stdout.Write(append(line, '\n'))
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	request, err := os.ReadFile("/dev/stdin")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := NewWithConfig(ctx, wasm, wazero.NewRuntimeConfig().WithMemoryLimitPages(4096))
	if err != nil {
		say("refused-at-load", err)
		return
	}
	defer p.Close(ctx)
	if _, err := p.Plan(request); err != nil {
		say("call-fails", errors.Unwrap(err))
		return
	}
	say("answers", nil)
}
