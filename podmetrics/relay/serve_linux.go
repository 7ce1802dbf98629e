package relay

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"time"

	"syscall"
)

// Per-connection socket timeouts: a caller that stalls cannot hold the
// relay (which serves one connection at a time) for longer.
const (
	readTimeout  = 5 * time.Second
	writeTimeout = 10 * time.Second
)

// Listen opens a TCP listening socket on every address at port: IPv6 and
// IPv4 where the sandbox has IPv6, IPv4 alone otherwise.
func Listen(port int) (int, error) {
	fd, err := listen(syscall.AF_INET6, &syscall.SockaddrInet6{Port: port})
	if err != nil {
		fd, err = listen(syscall.AF_INET, &syscall.SockaddrInet4{Port: port})
	}
	if err != nil {
		return -1, wrap("listening on port "+strconv.Itoa(port), err)
	}
	return fd, nil
}

func listen(family int, sa syscall.Sockaddr) (int, error) {
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if family == syscall.AF_INET6 {
		syscall.SetsockoptInt(fd, syscall.IPPROTO_IPV6, syscall.IPV6_V6ONLY, 0)
	}
	syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(fd, sa); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	if err := syscall.Listen(fd, 16); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// Serve accepts connections on the listening socket lfd, one at a time,
// sending each request to out (the shim) and the answer from in back. It
// returns when in or out fails: io.EOF when the shim closed in.
func Serve(lfd int, in io.Reader, out io.Writer) error {
	buf := make([]byte, 32<<10)
	for {
		c, _, err := syscall.Accept4(lfd, syscall.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, syscall.EINTR) || errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EMFILE) {
				continue
			}
			return wrap("accept", err)
		}
		err = handle(c, buf, in, out)
		syscall.Close(c)
		if err != nil {
			return err
		}
	}
}

// handle relays one connection. Only a failure of in or out is returned:
// a caller that goes away or sends garbage just loses its connection.
func handle(c int, buf []byte, in io.Reader, out io.Writer) error {
	rt, wt := syscall.NsecToTimeval(readTimeout.Nanoseconds()), syscall.NsecToTimeval(writeTimeout.Nanoseconds())
	syscall.SetsockoptTimeval(c, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &rt)
	syscall.SetsockoptTimeval(c, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &wt)
	head, ok := readHead(c, buf[:MaxRequest])
	if !ok {
		return nil
	}
	if err := WriteFrame(out, head); err != nil {
		return err
	}
	n, err := FrameLen(in, MaxResponse)
	if err != nil {
		return err
	}
	// Stream the answer; keep reading it all even when the caller is
	// gone, so the next frame starts where it should.
	writing := true
	for n > 0 {
		k := min(n, len(buf))
		if _, err := io.ReadFull(in, buf[:k]); err != nil {
			return wrap("reading response", err)
		}
		if writing && !writeAll(c, buf[:k]) {
			writing = false
		}
		n -= k
	}
	return nil
}

// readHead reads up to the end of the request head ("\r\n\r\n").
func readHead(c int, buf []byte) ([]byte, bool) {
	n := 0
	for n < len(buf) {
		k, err := syscall.Read(c, buf[n:])
		if err != nil && errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || k <= 0 {
			return nil, false
		}
		n += k
		if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 {
			return append([]byte(nil), buf[:i+4]...), true
		}
	}
	return nil, false // head over MaxRequest
}

func writeAll(c int, b []byte) bool {
	for len(b) > 0 {
		k, err := syscall.Write(c, b)
		if err != nil && errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || k <= 0 {
			return false
		}
		b = b[k:]
	}
	return true
}
