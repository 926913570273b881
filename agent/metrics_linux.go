package agent

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the agent's Prometheus metrics (a registry of its own, so several agents in
// one process, as in tests, do not collide).
type metrics struct {
	reg          *prometheus.Registry
	regen        prometheus.Histogram
	apply        prometheus.Histogram
	policyErrors prometheus.Counter
	l7           *prometheus.CounterVec
}

var latencyBuckets = []float64{.001, .0025, .005, .01, .02, .03, .05, .075, .1, .15, .25, .5, 1, 2.5, 5}

func newMetrics(a *Agent) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.regen = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "netward_policy_regeneration_seconds",
		Help:    "Time to compute the desired state (build the cluster, compile the endpoints' policies) per reconciliation.",
		Buckets: latencyBuckets,
	})
	m.apply = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "netward_policy_apply_seconds",
		Help:    "Time from a change in the policy directory being seen to the datapath enforcing the new set.",
		Buckets: latencyBuckets,
	})
	m.policyErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "netward_policy_errors_total",
		Help: "Policy sets rejected as invalid (the last valid set kept enforcing).",
	})
	m.l7 = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "netward_l7_requests_total",
		Help: "HTTP requests and DNS lookups the L7 proxies judged, and redirected connections and datagrams the ports without a proxy refused, by protocol (http, dns, tls, crd), direction and verdict (allowed, denied, error).",
	}, []string{"protocol", "direction", "verdict"})
	m.reg.MustRegister(m.regen, m.apply, m.policyErrors, m.l7,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "netward_endpoints",
			Help: "Endpoints registered with the agent.",
		}, func() float64 {
			a.mu.Lock()
			defer a.mu.Unlock()
			return float64(len(a.eps))
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "netward_policy_revision",
			Help: "Revision of the policy set being enforced (one more per applied change).",
		}, func() float64 {
			a.mu.Lock()
			defer a.mu.Unlock()
			return float64(a.revision)
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "netward_policy_valid",
			Help: "1 when the policy directory as it is now is enforced, 0 when it is invalid and the last valid set (or the pinned state) is.",
		}, func() float64 {
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.lastErr == nil && a.good != nil {
				return 1
			}
			return 0
		}),
		&datapathCollector{a: a},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// datapathCollector reads the datapath's per-reason counters at scrape time.
type datapathCollector struct{ a *Agent }

var (
	packetsDesc = prometheus.NewDesc("netward_datapath_packets_total",
		"Packets the datapath decided, by reason (forwarded-*, dropped-*, audit-would-drop, redirected).", []string{"reason"}, nil)
	bytesDesc = prometheus.NewDesc("netward_datapath_bytes_total",
		"Bytes the datapath decided, by reason.", []string{"reason"}, nil)
)

func (c *datapathCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- packetsDesc
	ch <- bytesDesc
}

func (c *datapathCollector) Collect(ch chan<- prometheus.Metric) {
	counters, err := c.a.dp.Metrics()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(packetsDesc, err)
		return
	}
	for reason, v := range counters {
		ch <- prometheus.MustNewConstMetric(packetsDesc, prometheus.CounterValue, float64(v.Packets), reason)
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(v.Bytes), reason)
	}
}
