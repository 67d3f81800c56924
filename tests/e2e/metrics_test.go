package e2e

import (
	"strings"
	"testing"

	"github.com/passerelle/passerelle/tests/harness"
)

// testMetrics reads the bridge's /metrics after messages crossed both ways: events
// handled and their latency are counted per direction, the bridge's own share never
// exceeds the whole, requests to the homeserver are timed, the Go runtime and process
// are described, and no label carries a user or room identifier.
func (v *variant) testMetrics(t *testing.T) {
	m, err := harness.ScrapeMetrics(v.ctx(), v.metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"to_network", "to_matrix"} {
		labels := map[string]string{"direction": dir}
		if n := m.Counter("passerelle_events_handled_total", map[string]string{"direction": dir, "outcome": "bridged"}); n < 1 {
			t.Errorf("%s: %v events counted as bridged after messages crossed", dir, n)
		}
		total := m.Histogram("passerelle_event_latency_seconds", labels)
		own := m.Histogram("passerelle_event_bridge_seconds", labels)
		if total.Count < 1 || own.Count != total.Count {
			t.Errorf("%s: %d latencies and %d own shares observed", dir, total.Count, own.Count)
		}
		t.Logf("%s: %d events, latency p50 %.1f ms, the bridge's own share p50 %.1f ms", dir, total.Count, 1000*total.Quantile(0.5), 1000*own.Quantile(0.5))
		if own.Sum > total.Sum {
			t.Errorf("%s: the bridge's own share (%.4fs) exceeds the whole latency (%.4fs)", dir, own.Sum, total.Sum)
		}
	}
	if hs := m.Histogram("passerelle_homeserver_request_seconds", nil); hs.Count < 1 {
		t.Error("no request to the homeserver was timed")
	}
	for _, name := range []string{"passerelle_queue_items", "go_goroutines", "process_resident_memory_bytes"} {
		if m[name] == nil {
			t.Errorf("%s is not served", name)
		}
	}
	for _, value := range m.LabelValues() {
		if strings.ContainsAny(value, "@!#") || strings.Contains(value, harness.DefaultDomain) {
			t.Errorf("a label carries an identifier: %q", value)
		}
	}
}
