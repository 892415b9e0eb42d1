package bench

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkFsync is the physical reference for the durable workloads: the
// rate at which the disk under b.TempDir() completes a small write followed
// by fsync, as a commit under synchronous=FULL does. A store that commits
// more orchestration steps per second than fsyncs/s puts several steps in
// one commit (group commit).
func BenchmarkFsync(b *testing.B) {
	for _, bc := range []struct {
		name   string
		append bool
	}{{"overwrite", false}, {"append", true}} {
		b.Run(bc.name, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = f.Close() }()
			buf := make([]byte, 4096)
			for i := range buf {
				buf[i] = byte(i)
			}
			if _, err := f.WriteAt(buf, 0); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				off := int64(0)
				if bc.append {
					off = int64(i+1) * int64(len(buf))
				}
				buf[0] = byte(i)
				if _, err := f.WriteAt(buf, off); err != nil {
					b.Fatal(err)
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsyncs/s")
		})
	}
}
