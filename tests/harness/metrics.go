package harness

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Metrics is one scrape of a bridge's /metrics, by family name.
type Metrics map[string]*dto.MetricFamily

// ScrapeMetrics reads the Prometheus text served at url.
func ScrapeMetrics(ctx context.Context, url string) (Metrics, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scraping %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scraping %s: status %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", url, err)
	}
	return Metrics(families), nil
}

// find returns the family's series whose labels include all of labels.
func (m Metrics) find(name string, labels map[string]string) []*dto.Metric {
	f := m[name]
	if f == nil {
		return nil
	}
	var out []*dto.Metric
	for _, s := range f.Metric {
		ok := true
		for k, v := range labels {
			found := false
			for _, l := range s.Label {
				if l.GetName() == k && l.GetValue() == v {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			out = append(out, s)
		}
	}
	return out
}

// Counter sums the matching series of a counter (0 when there is none).
func (m Metrics) Counter(name string, labels map[string]string) float64 {
	var sum float64
	for _, s := range m.find(name, labels) {
		sum += s.GetCounter().GetValue()
	}
	return sum
}

// Histogram is a histogram's cumulative buckets, count and sum.
type Histogram struct {
	Bounds []float64 // upper bounds, ascending, +Inf excluded
	Cum    []uint64  // cumulative counts per bound
	Count  uint64
	Sum    float64
}

// Histogram returns the first matching series of a histogram.
func (m Metrics) Histogram(name string, labels map[string]string) Histogram {
	var h Histogram
	series := m.find(name, labels)
	if len(series) == 0 {
		return h
	}
	ph := series[0].GetHistogram()
	h.Count, h.Sum = ph.GetSampleCount(), ph.GetSampleSum()
	for _, b := range ph.Bucket {
		if math.IsInf(b.GetUpperBound(), 1) {
			continue
		}
		h.Bounds = append(h.Bounds, b.GetUpperBound())
		h.Cum = append(h.Cum, b.GetCumulativeCount())
	}
	return h
}

// Minus is what was observed between an earlier scrape and this one.
func (h Histogram) Minus(earlier Histogram) Histogram {
	d := Histogram{Bounds: h.Bounds, Count: h.Count - earlier.Count, Sum: h.Sum - earlier.Sum}
	d.Cum = make([]uint64, len(h.Cum))
	for i := range h.Cum {
		d.Cum[i] = h.Cum[i]
		if i < len(earlier.Cum) {
			d.Cum[i] -= earlier.Cum[i]
		}
	}
	return d
}

// Quantile estimates the q-quantile as Prometheus' histogram_quantile does: linear
// within the bucket it falls in. Above the last bound it returns that bound.
func (h Histogram) Quantile(q float64) float64 {
	if h.Count == 0 {
		return math.NaN()
	}
	rank := q * float64(h.Count)
	i := sort.Search(len(h.Cum), func(i int) bool { return float64(h.Cum[i]) >= rank })
	if i == len(h.Cum) {
		return h.Bounds[len(h.Bounds)-1]
	}
	lower, below := 0.0, uint64(0)
	if i > 0 {
		lower, below = h.Bounds[i-1], h.Cum[i-1]
	}
	in := h.Cum[i] - below
	if in == 0 {
		return h.Bounds[i]
	}
	return lower + (h.Bounds[i]-lower)*(rank-float64(below))/float64(in)
}

// LabelValues lists every label value of every family, for checks that no user or
// room identifier leaks into the metrics.
func (m Metrics) LabelValues() []string {
	var out []string
	for _, f := range m {
		for _, s := range f.Metric {
			for _, l := range s.Label {
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}
