package podmetrics

import (
	"compress/gzip"
	"context"
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
	srv := Serve(ln, NewHandler(NewCollector(src, nil), nil), nil)
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

// blockingSource holds every Snapshot until release is closed.
type blockingSource struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blockingSource) Snapshot(ctx context.Context) (Snapshot, error) {
	b.entered <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return fullSnapshot(), nil
}

// Scrapes beyond maxInFlight at once are refused with 503; the held ones
// then finish.
func TestServerInFlight(t *testing.T) {
	src := &blockingSource{entered: make(chan struct{}, maxInFlight), release: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(ln, NewHandler(NewCollector(src, nil), nil), nil)
	defer srv.Close()
	url := "http://" + srv.Addr().String() + Path
	codes := make(chan int, maxInFlight)
	for range maxInFlight {
		go func() {
			code, _ := get(t, "GET", url)
			codes <- code
		}()
	}
	for range maxInFlight {
		<-src.entered
	}
	if code, body := get(t, "GET", url); code != http.StatusServiceUnavailable {
		t.Errorf("scrape %d at once = %d %q; want 503", maxInFlight+1, code, body)
	}
	close(src.release)
	for range maxInFlight {
		if code := <-codes; code != 200 {
			t.Errorf("held scrape = %d", code)
		}
	}
}

func TestAcceptsGzip(t *testing.T) {
	for v, want := range map[string]bool{
		"":                        false,
		"gzip":                    true,
		"GZIP":                    true,
		"identity":                false,
		"deflate, gzip;q=0.5":     true,
		"gzip;q=0":                false,
		"gzip; q=0.0":             false,
		"br, gzip ; q=1, *;q=0.1": true,
		"gzipx":                   false,
	} {
		h := http.Header{}
		if v != "" {
			h.Set("Accept-Encoding", v)
		}
		if got := acceptsGzip(h); got != want {
			t.Errorf("Accept-Encoding %q: gzip %v; want %v", v, got, want)
		}
	}
}

// The scrape Prometheus sends (gzip, its Accept list) gets the text format,
// compressed; the body is the same figures.
func TestServerPrometheusScrape(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := Serve(ln, NewHandler(NewCollector(&fakeSource{s: fullSnapshot()}, nil), nil), nil)
	defer srv.Close()
	req, _ := http.NewRequest("GET", "http://"+srv.Addr().String()+Path, nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1")
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req) // no transparent decompression
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("scrape: %d, Content-Encoding %q, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Encoding"), resp.Header.Get("Content-Type"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(body), "# TYPE container_cpu_usage_seconds_total counter\n") ||
		!strings.Contains(string(body), `container_cpu_usage_seconds_total{container="app",namespace="team-a",pod="web"} 3.5`) {
		t.Errorf("body:\n%s", body)
	}
}
