package analysis_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/netward/netward/analysis"
	"github.com/netward/netward/cluster"
	"github.com/netward/netward/internal/synth"
	"github.com/netward/netward/policy"
)

// BenchmarkMatrix builds a synthetic cluster (outside the timer) and computes the complete
// matrix, compiling every policy, at the sizes of the issue.
func BenchmarkMatrix(b *testing.B) {
	for _, s := range []struct{ pods, policies int }{{100, 50}, {1000, 300}, {5000, 1000}, {20000, 3000}} {
		b.Run(fmt.Sprintf("pods=%d/policies=%d", s.pods, s.policies), func(b *testing.B) {
			if testing.Short() && s.pods > 1000 {
				b.Skip("large size skipped in -short mode")
			}
			objs := synth.Generate(synth.Sized(s.pods, s.policies))
			b.ResetTimer()
			var conns int
			for b.Loop() {
				c, err := cluster.Build(objs, cluster.Options{Policy: policy.DefaultOptions()})
				if err != nil {
					b.Fatal(err)
				}
				m, err := analysis.BuildMatrix(context.Background(), c, analysis.MatrixOptions{})
				if err != nil {
					b.Fatal(err)
				}
				conns = len(m.Connections)
			}
			b.ReportMetric(float64(conns), "connections")
		})
	}
}
