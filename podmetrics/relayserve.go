package podmetrics

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/cci-shim/cci-shim/podmetrics/relay"
)

// RelayBinary is the in-sandbox relay's file name (cmd/cci-podmetrics),
// installed beside the shim; RelayPath is where the shim mounts it, read-only,
// in the sandbox container; RelayExecID is the exec id it runs under in the
// backend (the shim's own process: its events are not containerd's).
const (
	RelayBinary = "cci-podmetrics"
	RelayPath   = "/.cci-podmetrics"
	RelayExecID = "cci-podmetrics"
)

// RelayArgs is the relay's command line for a pod's endpoint.
func RelayArgs(cfg Config) []string {
	return []string{RelayPath, "-port", strconv.Itoa(cfg.Port)}
}

// ServeRelay answers the requests the in-sandbox relay reads from the pod's
// network: each frame from in is a request head, answered with h as one
// frame on out. It returns when in ends (io.EOF: the relay exited) or
// either side fails.
//
// in is tenant input: the relay runs inside the tenant's sandbox, where a
// process of the pod may take its place. Frames are bounded (relay.MaxRequest),
// heads parsed by net/http, and h bounds the rate; the worst a forged frame
// gets is the pod's own metrics.
func ServeRelay(in io.Reader, out io.Writer, h http.Handler) error {
	for {
		head, err := relay.ReadFrame(in, relay.MaxRequest)
		if err != nil {
			return err
		}
		if err := relay.WriteFrame(out, respond(head, h)); err != nil {
			return err
		}
	}
}

// respond serves one request head with h and returns the whole response.
func respond(head []byte, h http.Handler) []byte {
	rec := &recorder{header: http.Header{}}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		rec.WriteHeader(http.StatusBadRequest)
		fmt.Fprintln(rec, "bad request")
	} else {
		req.RemoteAddr = "in-sandbox relay"
		h.ServeHTTP(rec, req)
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	resp := &http.Response{
		StatusCode:    rec.status,
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        rec.header,
		Body:          io.NopCloser(&rec.body),
		ContentLength: int64(rec.body.Len()),
		Close:         true,
	}
	var out bytes.Buffer
	resp.Write(&out)
	return out.Bytes()
}

// recorder is the http.ResponseWriter of a relayed request: the whole
// response is kept, then framed.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	if r.body.Len()+len(b) > relay.MaxResponse-4096 {
		return 0, fmt.Errorf("response over %d bytes", relay.MaxResponse)
	}
	return r.body.Write(b)
}
