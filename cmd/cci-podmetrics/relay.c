/*
 * cci-podmetrics: the in-sandbox half of a pod's metrics endpoint (SPEC R27)
 * where the sandbox owns the pod's network interface (gVisor's netstack,
 * Kata's guest). The shim mounts it read-only into the pod's sandbox
 * container and starts it there, as nobody without capabilities. It listens
 * on the metrics port and hands each request to the shim over its own stdin
 * and stdout, where the shim computes the answer (podmetrics.ServeRelay).
 *
 * Protocol (podmetrics/relay): frames, a 4-byte big-endian length and that
 * many bytes. Per connection the relay sends one frame holding the request
 * head as received (up to and including the blank line, at most 8 KiB) and
 * copies the frame it gets back, a complete HTTP/1.1 response, to the
 * connection, then closes it. One connection at a time; a caller that stalls
 * is dropped after 5 s. Stdout is the protocol: nothing else is written there.
 *
 * Why C: it runs in every such pod, and its memory is the pod's. Run in a
 * gVisor sandbox as the shim runs it (an exec beside the pause process,
 * scraped 10 times), the same loop written in Go (syscall package only, no
 * net/http or fmt) added 2.1-2.8 MiB to the sandbox's host memory (PSS of
 * sentry and gofer, least of 8 samples, against the same sandbox without it,
 * 3 runs), most of it the Go runtime's text and heap; this one adds 0.5-1.7
 * MiB (10 runs), of which an idle exec'd process alone is up to 0.6. It uses
 * nothing but libc and is linked statically: the sandbox image may have no
 * libc at all.
 *
 * Usage: cci-podmetrics [-port N]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

enum {
	MAX_REQUEST = 8 << 10,       /* relay.MaxRequest */
	MAX_RESPONSE = 32 << 20,     /* relay.MaxResponse */
	DEFAULT_PORT = 19100,
};

static char buf[32 << 10];

static void fail(const char *msg)
{
	static const char prefix[] = "cci-podmetrics: ";
	if (write(2, prefix, sizeof prefix - 1) < 0 || write(2, msg, strlen(msg)) < 0 || write(2, "\n", 1) < 0)
		_exit(1);
	_exit(1);
}

/* read_full reads exactly n bytes; -1 on EOF or error. */
static int read_full(int fd, char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = read(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int write_full(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

static int listen_on(int port)
{
	int one = 1, zero = 0;
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0) {
		struct sockaddr_in6 a;
		memset(&a, 0, sizeof a);
		a.sin6_family = AF_INET6;
		a.sin6_port = htons((uint16_t)port);
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 16) == 0)
			return fd;
		close(fd);
	}
	/* No IPv6 in the sandbox. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 16) == 0)
		return fd;
	close(fd);
	return -1;
}

/* read_head reads a request head into buf; its length, or 0 when the
 * caller sent no complete head within MAX_REQUEST bytes and the timeout. */
static size_t read_head(int c)
{
	size_t n = 0;
	while (n < MAX_REQUEST) {
		ssize_t k = read(c, buf + n, MAX_REQUEST - n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return 0;
		/* The end may straddle what was there and what came. */
		size_t from = n >= 3 ? n - 3 : 0;
		n += (size_t)k;
		char *end = memmem(buf + from, n - from, "\r\n\r\n", 4);
		if (end != NULL)
			return (size_t)(end + 4 - buf);
	}
	return 0;
}

/* relay serves one connection. It returns -1 only when stdin or stdout
 * fails (the shim is gone); a caller that misbehaves loses its connection. */
static int relay(int c)
{
	struct timeval rt = {5, 0}, wt = {10, 0};
	setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &rt, sizeof rt);
	setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &wt, sizeof wt);
	size_t n = read_head(c);
	if (n == 0)
		return 0;
	unsigned char hdr[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16), (unsigned char)(n >> 8), (unsigned char)n};
	if (write_full(1, (char *)hdr, 4) < 0 || write_full(1, buf, n) < 0)
		return -1;
	if (read_full(0, (char *)hdr, 4) < 0)
		return -1;
	uint32_t left = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	if (left > MAX_RESPONSE)
		return -1;
	/* Read all of it even when the caller is gone, so the next frame
	 * starts where it should. */
	int writing = 1;
	while (left > 0) {
		size_t k = left < sizeof buf ? left : sizeof buf;
		if (read_full(0, buf, k) < 0)
			return -1;
		if (writing && write_full(c, buf, k) < 0)
			writing = 0;
		left -= (uint32_t)k;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int port = DEFAULT_PORT;
	if (argc == 3 && strcmp(argv[1], "-port") == 0) {
		char *end;
		long p = strtol(argv[2], &end, 10);
		if (*argv[2] == '\0' || *end != '\0' || p < 1 || p > 65535)
			fail("bad port");
		port = (int)p;
	} else if (argc != 1) {
		fail("usage: cci-podmetrics [-port N]");
	}
	int fd = listen_on(port);
	if (fd < 0)
		fail("cannot listen on the metrics port");
	for (;;) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
				usleep(100 * 1000);
				continue;
			}
			fail("accept failed");
		}
		int err = relay(c);
		close(c);
		if (err < 0)
			return 0; /* the shim closed our stdio: the endpoint ends */
	}
}
