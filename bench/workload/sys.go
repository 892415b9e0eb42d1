package workload

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// PeakRSS returns the peak resident set size of the process pid (0: this
// process) in bytes: VmHWM in /proc/<pid>/status (Linux only).
func PeakRSS(pid int) (int64, error) {
	p := "/proc/self/status"
	if pid > 0 {
		p = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	return statusField(b, "VmHWM:")
}

// statusField reads a "Name:   123 kB" line of /proc/<pid>/status in bytes.
func statusField(status []byte, name string) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		f := strings.Fields(strings.TrimPrefix(line, name))
		if len(f) == 0 {
			break
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, err
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("no %s in /proc status", strings.TrimSuffix(name, ":"))
}

// ResetPeakRSS returns freed memory to the OS and resets this process's
// peak RSS to its current RSS (Linux: "5" into /proc/self/clear_refs), so
// that the next PeakRSS measures what comes after. It is best-effort.
func ResetPeakRSS() error {
	runtime.GC()
	debug.FreeOSMemory()
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// FsyncRate measures how many small synchronous writes per second the disk
// under dir completes: a 4 KiB write at the end of a file followed by fsync,
// as a commit that appends to a WAL under synchronous=FULL does, for about
// d. It is the physical bound on one-commit-per-step throughput.
func FsyncRate(dir string, d time.Duration) (float64, error) {
	f, err := os.CreateTemp(dir, "fsync-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(i)
	}
	n := 0
	start := time.Now()
	for time.Since(start) < d || n < 10 {
		buf[0] = byte(n)
		if _, err := f.WriteAt(buf, int64(n)*int64(len(buf))); err != nil {
			return 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, err
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// Machine describes this machine: CPU model, CPUs, memory, OS and the
// filesystem under dir.
func Machine(dir string) string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if n, err := statusField(b, "MemTotal:"); err == nil {
			mem = fmt.Sprintf(", %.1f GiB memory", float64(n)/(1<<30))
		}
	}
	fs := ""
	if abs, err := filepath.Abs(dir); err == nil {
		fs = ", store on " + mountOf(abs)
	}
	return fmt.Sprintf("%s, %d CPUs%s, %s/%s, %s%s", cpu, runtime.NumCPU(), mem, runtime.GOOS, runtime.GOARCH, runtime.Version(), fs)
}

// mountOf returns the device and filesystem type of the mount holding path.
func mountOf(path string) string {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return "unknown filesystem"
	}
	best, desc := "", "unknown filesystem"
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		mp := f[1]
		if (path == mp || strings.HasPrefix(path, strings.TrimSuffix(mp, "/")+"/") || mp == "/") && len(mp) > len(best) {
			best, desc = mp, f[0]+" ("+f[2]+")"
		}
	}
	return desc
}
