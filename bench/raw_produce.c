/*
 * raw_produce: kafkad's wire protocol spoken directly from C (no client
 * stub), as fast as the Unix socket allows: the limit of the local hop.
 *
 *   raw_produce SOCKET TOPIC MESSAGES BATCH SIZE [WINDOW]
 *
 * Sends `hello`, then MESSAGES bare SIZE-byte values in produce requests of
 * BATCH messages with ack "none" (the compact form of protocol/SPEC.md 4.4:
 * bare bytes, no key), pipelined: up to WINDOW requests (default 64) sent
 * and not yet answered.  The request frame is encoded once; only its id
 * changes.  Every response must be a success.  Then one `flush` request,
 * whose `remaining` must be 0 (Kafka acknowledged every message).
 *
 * Prints one JSON line: messages, requests, frame_bytes (wire bytes of the
 * produce frames), accept_s (first byte sent .. last produce response: the
 * daemon took every message into its producer queue), flush_s (.. flush
 * answered: all delivered), cpu_s (this process, getrusage).
 *
 * Responses are decoded with msgpack-c; requests are written by hand.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <msgpack.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what)
{
	fprintf(stderr, "raw_produce: %s%s%s\n", what, errno ? ": " : "", errno ? strerror(errno) : "");
	exit(1);
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* --- encoding ------------------------------------------------------------ */

typedef struct {
	unsigned char *p;
	size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *data, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2;
		b->p = realloc(b->p, b->cap);
		if (!b->p)
			die("out of memory");
	}
	memcpy(b->p + b->len, data, n);
	b->len += n;
}

static void put_u8(buf_t *b, unsigned v)
{
	unsigned char c = (unsigned char)v;
	put(b, &c, 1);
}

static void put_be32(unsigned char *at, uint32_t v)
{
	at[0] = v >> 24;
	at[1] = v >> 16;
	at[2] = v >> 8;
	at[3] = v;
}

static void put_u32(buf_t *b, uint32_t v)
{
	unsigned char c[4];
	put_be32(c, v);
	put(b, c, 4);
}

static void put_str(buf_t *b, const char *s)
{
	size_t n = strlen(s);
	if (n < 32) {
		put_u8(b, 0xa0 | n);
	} else if (n < 256) {
		put_u8(b, 0xd9);
		put_u8(b, n);
	} else {
		die("string too long");
	}
	put(b, s, n);
}

/* [id, op, args] with id as uint32 (0xce) at offset 4+2 of the frame, so it can be patched */
static size_t begin_request(buf_t *b, const char *op)
{
	b->len = 0;
	put_u32(b, 0); /* frame length, set by end_request */
	put_u8(b, 0x93);
	put_u8(b, 0xce);
	put_u32(b, 0);
	put_str(b, op);
	return 6;
}

static void end_request(buf_t *b)
{
	put_be32(b->p, (uint32_t)(b->len - 4));
}

static void set_id(buf_t *b, uint32_t id)
{
	put_be32(b->p + 6, id);
}

/* --- I/O ----------------------------------------------------------------- */

static int fd = -1;
static unsigned char *rbuf;
static size_t rlen, rcap = 1 << 20;

static void send_all(const buf_t *b)
{
	size_t off = 0;
	while (off < b->len) {
		struct pollfd p = {fd, POLLOUT, 0};
		ssize_t n = send(fd, b->p + off, b->len - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
		} else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
			poll(&p, 1, -1);
		} else {
			die("send");
		}
	}
}

/* read what is there (block when `wait`); returns bytes read */
static size_t fill(int wait)
{
	if (rcap - rlen < 65536) {
		rcap *= 2;
		rbuf = realloc(rbuf, rcap);
		if (!rbuf)
			die("out of memory");
	}
	for (;;) {
		ssize_t n = recv(fd, rbuf + rlen, rcap - rlen, wait ? 0 : MSG_DONTWAIT);
		if (n > 0) {
			rlen += (size_t)n;
			return (size_t)n;
		}
		if (n == 0) {
			errno = 0;
			die("kafkad closed the connection");
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN && !wait)
			return 0;
		die("recv");
	}
}

/* one complete response frame from rbuf into *obj (zone reset by caller); 0 if none yet */
static int next_frame(msgpack_zone *zone, msgpack_object *obj)
{
	if (rlen < 4)
		return 0;
	uint32_t n = ((uint32_t)rbuf[0] << 24) | ((uint32_t)rbuf[1] << 16) | ((uint32_t)rbuf[2] << 8) | rbuf[3];
	if (rlen < 4 + (size_t)n)
		return 0;
	size_t off = 0;
	if (msgpack_unpack((const char *)rbuf + 4, n, &off, zone, obj) != MSGPACK_UNPACK_SUCCESS || off != n) {
		errno = 0;
		die("undecodable response frame");
	}
	/* the object points into the zone, not into rbuf: safe to shift */
	memmove(rbuf, rbuf + 4 + n, rlen - 4 - n);
	rlen -= 4 + n;
	return 1;
}

static const msgpack_object *map_get(const msgpack_object *m, const char *key)
{
	if (m->type != MSGPACK_OBJECT_MAP)
		return NULL;
	size_t kl = strlen(key);
	for (uint32_t i = 0; i < m->via.map.size; i++) {
		const msgpack_object *k = &m->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == kl && !memcmp(k->via.str.ptr, key, kl))
			return &m->via.map.ptr[i].val;
	}
	return NULL;
}

/* checks [id, nil, result]; returns the result */
static const msgpack_object *ok_result(const msgpack_object *o, const char *what)
{
	if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 3) {
		errno = 0;
		die("response is not [id, error, result]");
	}
	if (o->via.array.ptr[1].type != MSGPACK_OBJECT_NIL) {
		fprintf(stderr, "raw_produce: %s failed: ", what);
		msgpack_object_print(stderr, o->via.array.ptr[1]);
		fputc('\n', stderr);
		exit(1);
	}
	return &o->via.array.ptr[2];
}

static const msgpack_object *call(buf_t *req, const char *what, msgpack_zone *zone)
{
	static msgpack_object obj;
	send_all(req);
	while (!next_frame(zone, &obj))
		fill(1);
	return ok_result(&obj, what);
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: raw_produce SOCKET TOPIC MESSAGES BATCH SIZE [WINDOW]\n");
		return 2;
	}
	const char *path = argv[1], *topic = argv[2];
	long messages = atol(argv[3]), batch = atol(argv[4]), size = atol(argv[5]);
	long window = argc > 6 ? atol(argv[6]) : 64;
	if (messages <= 0 || batch <= 0 || size < 0 || size > 65535 || window <= 0) {
		fprintf(stderr, "raw_produce: bad arguments\n");
		return 2;
	}

	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof sa.sun_path)
		die("socket path too long");
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		die("connect");
	int sz = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	rbuf = malloc(rcap);
	msgpack_zone *zone = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE);
	if (!rbuf || !zone)
		die("out of memory");

	/* hello: the daemon's max_batch bounds BATCH */
	buf_t req = {0};
	begin_request(&req, "hello");
	put_u8(&req, 0x82);
	put_str(&req, "version");
	put_u8(&req, 1);
	put_str(&req, "client");
	put_str(&req, "bench/raw_produce");
	end_request(&req);
	set_id(&req, 1);
	const msgpack_object *hello = call(&req, "hello", zone);
	const msgpack_object *mb = map_get(hello, "max_batch");
	if (mb && mb->type == MSGPACK_OBJECT_POSITIVE_INTEGER && (long)mb->via.u64 < batch)
		batch = (long)mb->via.u64;
	msgpack_zone_clear(zone);

	/* the produce frame, encoded once: {"topic", "ack": "none", "messages": [bin * batch]} */
	unsigned char *value = malloc(size ? (size_t)size : 1);
	if (!value)
		die("out of memory");
	memset(value, 'x', (size_t)size);
	buf_t frame = {0}, last = {0};
	for (int pass = 0; pass < 2; pass++) {
		long n = pass == 0 ? batch : messages % batch;
		buf_t *b = pass == 0 ? &frame : &last;
		if (n == 0)
			continue;
		begin_request(b, "produce");
		put_u8(b, 0x83);
		put_str(b, "topic");
		put_str(b, topic);
		put_str(b, "ack");
		put_str(b, "none");
		put_str(b, "messages");
		put_u8(b, 0xdd);
		put_u32(b, (uint32_t)n);
		for (long i = 0; i < n; i++) {
			if (size < 256) {
				put_u8(b, 0xc4);
				put_u8(b, (unsigned)size);
			} else {
				put_u8(b, 0xc5);
				put_u8(b, (unsigned)size >> 8);
				put_u8(b, (unsigned)size & 0xff);
			}
			put(b, value, (size_t)size);
		}
		end_request(b);
	}
	long requests = messages / batch + (messages % batch ? 1 : 0);
	long full = messages / batch;
	double frame_bytes = (double)full * frame.len + (messages % batch ? (double)last.len : 0);

	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	double t0 = now();
	long sent = 0, answered = 0, produced = 0;
	size_t off = 0; /* bytes of the current request already sent */
	buf_t *cur = NULL;
	msgpack_object obj;
	while (answered < requests) {
		if (!cur && sent < requests && sent - answered < window) {
			cur = sent < full ? &frame : &last;
			set_id(cur, (uint32_t)(sent + 2));
			off = 0;
		}
		struct pollfd p = {fd, POLLIN | (cur ? POLLOUT : 0), 0};
		if (poll(&p, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		if (p.revents & (POLLERR | POLLHUP) && !(p.revents & POLLIN)) {
			errno = 0;
			die("connection error");
		}
		if (cur && (p.revents & POLLOUT)) {
			/* write until the socket is full or the window closes */
			while (cur) {
				ssize_t n = send(fd, cur->p + off, cur->len - off, MSG_NOSIGNAL | MSG_DONTWAIT);
				if (n < 0) {
					if (errno == EAGAIN || errno == EINTR)
						break;
					die("send");
				}
				off += (size_t)n;
				if (off == cur->len) {
					sent++;
					cur = NULL;
					if (sent < requests && sent - answered < window) {
						cur = sent < full ? &frame : &last;
						set_id(cur, (uint32_t)(sent + 2));
						off = 0;
					}
				}
			}
		}
		if (p.revents & POLLIN) {
			while (fill(0) > 0) {
			}
			while (next_frame(zone, &obj)) {
				const msgpack_object *res = ok_result(&obj, "produce");
				const msgpack_object *cnt = map_get(res, "count");
				if (cnt && cnt->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
					produced += (long)cnt->via.u64;
				answered++;
				msgpack_zone_clear(zone);
			}
		}
	}
	double t_accept = now();

	begin_request(&req, "flush");
	put_u8(&req, 0x81);
	put_str(&req, "timeout_ms");
	put_u8(&req, 0xce);
	put_u32(&req, 120000);
	end_request(&req);
	set_id(&req, 1);
	const msgpack_object *fl = call(&req, "flush", zone);
	double t_flush = now();
	getrusage(RUSAGE_SELF, &ru1);
	const msgpack_object *rem = map_get(fl, "remaining");
	long remaining = rem && rem->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (long)rem->via.u64 : -1;
	double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
		     (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	printf("{\"messages\": %ld, \"produced\": %ld, \"requests\": %ld, \"batch\": %ld, \"window\": %ld, "
	       "\"frame_bytes\": %.0f, \"accept_s\": %.6f, \"flush_s\": %.6f, \"remaining\": %ld, \"cpu_s\": %.4f}\n",
	       messages, produced, requests, batch, window, frame_bytes, t_accept - t0, t_flush - t0, remaining, cpu);
	close(fd);
	return produced == messages && remaining == 0 ? 0 : 1;
}
