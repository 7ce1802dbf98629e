package podmetrics

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"golang.org/x/net/netutil"
	"golang.org/x/time/rate"
)

// Limits on what callers of the endpoint may cost the host. The callers are
// whoever reaches the pod's IP; the work (cgroup reads, statfs) runs in the
// serving process, outside the pod's own CPU limit when that is the shim.
const (
	maxConns         = 8               // open connections at once
	maxInFlight      = 2               // scrapes computed at once
	scrapesPerSecond = 5               // sustained scrapes per second; more get 429
	maxHeaderBytes   = 8 << 10         // request head
	readTimeout      = 5 * time.Second // to read a request
	writeTimeout     = 15 * time.Second
	idleTimeout      = 30 * time.Second
)

// NewHandler serves c's metrics at Path, and nothing else, in the
// exposition format the scraper asks for (Accept; text by default). Scrapes
// beyond scrapesPerSecond are refused with 429, beyond maxInFlight at once
// with 503, and one that takes longer than scrapeTimeout and a second ends
// with 503.
func NewHandler(c *Collector, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	inFlight := make(chan struct{}, maxInFlight)
	metrics := http.TimeoutHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case inFlight <- struct{}{}:
			defer func() { <-inFlight }()
		default:
			http.Error(w, "too many scrapes at once", http.StatusServiceUnavailable)
			return
		}
		format := expfmt.Negotiate(r.Header)
		var body bytes.Buffer
		enc := expfmt.NewEncoder(&body, format)
		for _, mf := range c.gather(r.Context()) {
			if err := enc.Encode(mf); err != nil {
				log.Warn("pod metrics: encoding a scrape", "family", mf.GetName(), "error", err)
				http.Error(w, "encoding the metrics failed", http.StatusInternalServerError)
				return
			}
		}
		if cl, ok := enc.(expfmt.Closer); ok {
			if err := cl.Close(); err != nil {
				http.Error(w, "encoding the metrics failed", http.StatusInternalServerError)
				return
			}
		}
		w.Header().Set("Content-Type", string(format))
		if !acceptsGzip(r.Header) {
			w.Write(body.Bytes())
			return
		}
		// Prometheus asks for gzip; the relay's frames are bounded, so the
		// figures of a pod with many containers still fit compressed.
		w.Header().Set("Content-Encoding", "gzip")
		gz := gzip.NewWriter(w)
		gz.Write(body.Bytes())
		gz.Close()
	}), scrapeTimeout+time.Second, "scrape timed out")
	limiter := rate.NewLimiter(scrapesPerSecond, scrapesPerSecond)
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Path, func(w http.ResponseWriter, r *http.Request) {
		if !limiter.Allow() {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "too many scrapes", http.StatusTooManyRequests)
			return
		}
		metrics.ServeHTTP(w, r)
	})
	return mux
}

// acceptsGzip reports whether the request's Accept-Encoding lists gzip
// without refusing it (q=0).
func acceptsGzip(h http.Header) bool {
	for _, v := range h.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(part, ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
			if q, ok := strings.CutPrefix(q, "q="); ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					return false
				}
			}
			return true
		}
	}
	return false
}

// Server serves a pod's endpoint on a listener.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Serve serves h on ln (at most maxConns connections) until Close.
func Serve(ln net.Listener, h http.Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		ln: ln,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
	}
	go func() {
		if err := s.srv.Serve(netutil.LimitListener(ln, maxConns)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pod metrics endpoint stopped", "error", err)
		}
	}()
	return s
}

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops listening and drops open connections.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		return s.srv.Close()
	}
	return nil
}
