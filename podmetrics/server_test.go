package podmetrics

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	src := &fakeSource{s: fullSnapshot()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(ln, NewHandler(NewRegistry(src, nil), nil), nil)
	defer srv.Close()
	base := "http://" + srv.Addr().String()

	code, body := get(t, "GET", base+"/metrics")
	if code != 200 || !strings.Contains(body, `container_cpu_usage_seconds_total{container="app",namespace="team-a",pod="web"} 3.5`) {
		t.Fatalf("GET /metrics = %d\n%s", code, body)
	}
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/", 404}, {"GET", "/debug/pprof/", 404}, {"GET", "/metrics/x", 404}, {"POST", "/metrics", 405},
	} {
		if code, _ := get(t, tc.method, base+tc.path); code != tc.want {
			t.Errorf("%s %s = %d; want %d", tc.method, tc.path, code, tc.want)
		}
	}
	if src.calls != 1 {
		t.Errorf("source read %d times; only the one scrape may read it", src.calls)
	}

	// The scrape rate is bounded: a burst beyond it is refused.
	var refused int
	for range 2 * scrapesPerSecond {
		if code, _ := get(t, "GET", base+"/metrics"); code == http.StatusTooManyRequests {
			refused++
		}
	}
	if refused == 0 {
		t.Errorf("%d scrapes in a burst: none refused", 2*scrapesPerSecond)
	}

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", srv.Addr().String()); err == nil {
		t.Error("still listening after Close")
	}
}
