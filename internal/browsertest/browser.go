// Package browsertest runs headless Chromium for the dashboard's browser
// tests, with chromedp. Tests skip, with a message, where Chromium is not
// installed, except under CI=true, where they fail: CI installs Debian's
// chromium package.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// browsers are the executables looked for, in order. DURO_CHROMIUM names
// another.
var browsers = []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Chromium returns the browser's path, or skips the test (fails it under
// CI=true) when there is none.
func Chromium(t testing.TB) string {
	t.Helper()
	names := browsers
	if p := os.Getenv("DURO_CHROMIUM"); p != "" {
		names = []string{p}
	}
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := "no Chromium (" + strings.Join(names, ", ") + ") on PATH: apt-get install -y chromium, or name one with DURO_CHROMIUM"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// New starts a headless Chromium with a fresh profile and a window of
// width × height, and returns a chromedp context for one tab, bounded by
// timeout. Everything is stopped when the test ends.
func New(t testing.TB, width, height int, timeout time.Duration) context.Context {
	t.Helper()
	path := Chromium(t)
	// Not t.TempDir: the browser's helpers may still write to the profile
	// as the test ends; it is removed after the browser stops.
	profile, err := os.MkdirTemp("", "duro-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(width, height),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf), chromedp.WithErrorf(func(format string, args ...any) {
		// chromedp does not know every event a newer Chromium sends.
		if !strings.HasPrefix(format, "unhandled") && !strings.Contains(fmt.Sprintf(format, args...), "unhandled node event") {
			t.Logf("chromedp: "+format, args...)
		}
	}))
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc()
		for range 20 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
	if err := chromedp.Run(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", path, err)
	}
	return ctx
}

// ArtifactsDir is where screenshots go: $DURO_ARTIFACTS/<test name> when
// DURO_ARTIFACTS is set, else a directory of the test's that is removed
// when it ends.
func ArtifactsDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv("DURO_ARTIFACTS")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Screenshot saves a screenshot of the whole page as dir/name.png and
// returns its path.
func Screenshot(t testing.TB, ctx context.Context, dir, name string) string {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return path
}
