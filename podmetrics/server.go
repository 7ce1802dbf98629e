package podmetrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
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

// NewHandler serves reg's metrics at Path, and nothing else. Scrapes beyond
// scrapesPerSecond are refused with 429, beyond maxInFlight at once with 503.
func NewHandler(reg *prometheus.Registry, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	metrics := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxInFlight,
		Timeout:             scrapeTimeout + time.Second,
	})
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
