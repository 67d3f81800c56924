package bridge

// Metrics: what an operator graphs and alerts on, served on the diagnostics listener
// (metrics.listen). Labels name directions and outcomes, never users or rooms, so the
// number of series stays fixed however many people use the bridge.

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/passerelle/passerelle/bridge/database"
)

// Directions of bridged events, as metric labels.
const (
	dirToNetwork = "to_network"
	dirToMatrix  = "to_matrix"
)

// latencyBuckets resolve the bridge's own share (targets of a few milliseconds) as
// well as the homeserver's (tens to hundreds) and retries (seconds to minutes).
var latencyBuckets = []float64{.0005, .001, .002, .003, .005, .0075, .01, .02, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300}

// bridgeMetrics are the bridge's collectors, in a registry of their own (not the
// process-wide default, so two bridges in one test binary do not collide).
type bridgeMetrics struct {
	reg *prometheus.Registry
	// handled counts queue items finished, by direction and outcome.
	handled *prometheus.CounterVec
	// latency is from an event's arrival (the transaction stored, the remote event
	// queued) until its last effect returned (sent on the network, or into Matrix).
	latency *prometheus.HistogramVec
	// own is latency less the time spent waiting for the homeserver's answers and
	// behind earlier events of the same room or chat (kept in order): what the bridge
	// itself adds.
	own *prometheus.HistogramVec
	// homeserver times every request to the homeserver, whatever made it.
	homeserver prometheus.Histogram
	// remoteDropped counts network events dropped because their chat stayed behind.
	remoteDropped prometheus.Counter
	// matrixDropped counts Matrix events dropped because their room stayed behind.
	matrixDropped prometheus.Counter
}

func newBridgeMetrics(queueLen func() int) *bridgeMetrics {
	m := &bridgeMetrics{
		reg: prometheus.NewRegistry(),
		handled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passerelle_events_handled_total",
			Help: "Events taken off the durable queue, by direction and outcome (bridged, or given up).",
		}, []string{"direction", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "passerelle_event_latency_seconds",
			Help:    "From an event's arrival (transaction stored, remote event queued) to its last effect returning; retries included.",
			Buckets: latencyBuckets,
		}, []string{"direction"}),
		own: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "passerelle_event_bridge_seconds",
			Help:    "The bridge's own share of passerelle_event_latency_seconds: the latency less the time spent waiting for the homeserver and for earlier events of the same room or chat.",
			Buckets: latencyBuckets,
		}, []string{"direction"}),
		homeserver: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "passerelle_homeserver_request_seconds",
			Help:    "Requests the bridge made to the homeserver, until the answer's headers; the crypto device's /sync long polls left out.",
			Buckets: latencyBuckets,
		}),
		remoteDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "passerelle_remote_events_dropped_total",
			Help: "Events of history-less networks (IRC) dropped because their chat stayed further behind than bridge.max_queue_per_chat; each chat's room is told how many.",
		}),
		matrixDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "passerelle_matrix_events_dropped_total",
			Help: "Matrix messages, reactions, typing and receipts dropped because their room stayed further behind than bridge.max_queue_per_chat; each room is told how many.",
		}),
	}
	m.reg.MustRegister(m.handled, m.latency, m.own, m.homeserver, m.remoteDropped, m.matrixDropped,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "passerelle_queue_items",
			Help: "Events stored durably and not yet finished, both directions.",
		}, func() float64 { return float64(queueLen()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// handler serves the registry in Prometheus' text format.
func (m *bridgeMetrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// observe records one finished queue item.
func (m *bridgeMetrics) observe(item database.QueueItem, t *itemTiming, err error) {
	dir := dirToNetwork
	if item.Kind == kindRemote {
		dir = dirToMatrix
	}
	outcome := "bridged"
	if err != nil {
		outcome = "given_up"
	}
	m.handled.WithLabelValues(dir, outcome).Inc()
	// Items resumed after a restart have no arrival time in memory; their latency
	// would measure the downtime.
	if err != nil || item.Accepted.IsZero() {
		return
	}
	total := time.Since(item.Accepted)
	m.latency.WithLabelValues(dir).Observe(total.Seconds())
	m.own.WithLabelValues(dir).Observe(max(total-item.Behind-t.homeserver(), 0).Seconds())
}

// itemTiming adds up, for one queue item's handling, the time its requests to the
// homeserver took.
type itemTiming struct {
	hs atomic.Int64 // nanoseconds
}

func (t *itemTiming) homeserver() time.Duration { return time.Duration(t.hs.Load()) }

type itemTimingKey struct{}

func withItemTiming(ctx context.Context, t *itemTiming) context.Context {
	return context.WithValue(ctx, itemTimingKey{}, t)
}

// timedTransport times every request to the homeserver, and charges it to the queue
// item whose handling made it, if any.
type timedTransport struct {
	next    http.RoundTripper
	metrics *bridgeMetrics
}

// RoundTrip implements http.RoundTripper.
func (tt timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := tt.next.RoundTrip(req)
	took := time.Since(start)
	// The crypto device's /sync is a long poll that waits up to 30 s by design: it
	// would swamp what the histogram is for (how fast the homeserver answers).
	if !strings.HasSuffix(req.URL.Path, "/sync") {
		tt.metrics.homeserver.Observe(took.Seconds())
	}
	if t, ok := req.Context().Value(itemTimingKey{}).(*itemTiming); ok {
		t.hs.Add(int64(took))
	}
	return resp, err
}

// timeHomeserverRequests wraps the appservice's HTTP client, which every intent and
// the crypto client share.
func (m *bridgeMetrics) timeHomeserverRequests(c *http.Client) {
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c.Transport = timedTransport{next: next, metrics: m}
}
