package dashboard

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	tests := []struct {
		path   string
		status int
		ctype  string
		body   string
	}{
		{"/", 200, "text/html", `<script src="assets/app.js" defer></script>`},
		{"/assets/app.js", 200, "javascript", "function route()"},
		{"/assets/style.css", 200, "text/css", "@media (max-width: 700px)"},
		{"/assets/ui.js", 200, "javascript", "const api"},
		{"/assets/timeline.js", 200, "javascript", "function buildTimeline"},
		{"/assets/inflight.js", 200, "javascript", "function workersView"},
		{"/assets/nope.js", 404, "", ""},
		{"/instances", 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = res.Body.Close() }()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != tt.status || !strings.Contains(res.Header.Get("Content-Type"), tt.ctype) || !strings.Contains(string(b), tt.body) {
				t.Fatalf("%d %q, want %d %q containing %q", res.StatusCode, res.Header.Get("Content-Type"), tt.status, tt.ctype, tt.body)
			}
			if tt.status == 200 && res.Header.Get("Content-Security-Policy") != csp {
				t.Errorf("CSP %q", res.Header.Get("Content-Security-Policy"))
			}
		})
	}
}

// TestNoExternalResources: the page loads nothing from elsewhere (no CDN)
// and runs no inline script, which its CSP would block.
func TestNoExternalResources(t *testing.T) {
	t.Parallel()
	url := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`)
	inline := regexp.MustCompile(`<script>|<script [^>]*>[^<]+</script>|\son[a-z]+=`)
	err := fs.WalkDir(assets, "assets", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(assets, path)
		if err != nil {
			return err
		}
		if m := url.Find(b); m != nil {
			t.Errorf("%s loads from elsewhere: %s", path, m)
		}
		if strings.HasSuffix(path, ".html") && inline.Match(b) {
			t.Errorf("%s has inline script", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
