package sidekill_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"

	sidekill "example.invalid/sidekill/tests/polyglot/go"
)

// The README's snippet: load the module once, plan a Pod, read the envelope.
func Example() {
	ctx := context.Background()
	wasm, err := os.ReadFile(orDefault(os.Getenv("SIDEKILL_WASM"), "../../../dist/raw/sidekill_policy.wasm"))
	if err != nil {
		log.Fatal(err)
	}
	policy, err := sidekill.New(ctx, wasm) // compiles, instantiates with no imports, checks ABI 1
	if err != nil {
		log.Fatal(err)
	}
	defer policy.Close(ctx)

	answer, err := policy.Plan([]byte(`{"object": {"apiVersion": "v1", "kind": "Pod",
		"metadata": {"name": "job", "annotations": {"sidecar.istio.io/status": "{\"containers\":[\"istio-proxy\"]}"}},
		"spec": {"containers": [{"name": "main", "image": "busybox"},
			{"name": "istio-proxy", "image": "istio/proxyv2:1.24.0"}]}}, "facts": {}}`))
	if err != nil {
		log.Fatal(err) // the host failed; a bad request is an {"error": ...} answer instead
	}
	var envelope struct {
		Ok *struct {
			Subjects []struct {
				Containers []struct{ Name, Role string }
			}
		}
		Error *struct{ Code, Message string }
	}
	if err := json.Unmarshal(answer, &envelope); err != nil || envelope.Error != nil {
		log.Fatalf("%v %+v", err, envelope.Error)
	}
	for _, c := range envelope.Ok.Subjects[0].Containers {
		fmt.Println(c.Name, c.Role)
	}
	// Output:
	// main workload
	// istio-proxy injected-sidecar
}

func orDefault(value, fallback string) string {
	if value != "" {
		return value
	}
	return fallback
}
