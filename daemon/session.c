#include "session.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"
#include "errors.h"
#include "log.h"
#include "ops.h"

#define RBUF_INITIAL (64u * 1024u)
#define ZONE_CHUNK 8192

typedef struct write_req {
	uv_write_t req;
	kd_session *s;
	char *buf;
	size_t len;
} write_req;

static void session_process_input(kd_session *s);
static void update_reading(kd_session *s);

static void outbox_changed(void *owner) { session_changed(owner); }

static void outbox_wait_done(void *owner, kd_waiter *w)
{
	kd_session *s = owner;
	s->parked--;
	ops_answer_waiter(s, w);
	free(w);
	update_reading(s);
}

static const kd_outbox_ops session_outbox_ops = {
	.changed = outbox_changed,
	.wait_done = outbox_wait_done,
};

static void session_free(kd_session *s)
{
	free(s->rbuf);
	msgpack_zone_destroy(&s->zone);
	free(s);
}

static void on_handle_closed(uv_handle_t *h)
{
	kd_session *s = h->data;
	/* a closed connection with held produces lives on until they are enqueued */
	if (--s->open_handles > 0 || s->in_draining)
		return;
	session_free(s);
}

static void release_outbox(kd_session *s)
{
	if (!s->ob)
		return;
	if (s->ob->inflight)
		log_info("connection #%llu closed with %llu messages in flight (they are still delivered)",
			 (unsigned long long)s->id, (unsigned long long)s->ob->inflight);
	outbox_orphan(s->d->producers, s->ob);
	s->ob = NULL;
}

/* A closed connection's held produces are all enqueued: let it go. */
static void finish_draining(kd_session *s)
{
	kd_daemon *d = s->d;
	for (kd_session **pp = &d->draining; *pp; pp = &(*pp)->next_draining) {
		if (*pp == s) {
			*pp = s->next_draining;
			break;
		}
	}
	s->in_draining = false;
	release_outbox(s);
	if (s->open_handles == 0)
		session_free(s);
}

/* Produce requests a closed connection sent completely are still executed
 * (their responses go nowhere): only produce frames, in order, stopping at
 * a held one. Other requests of a gone client are dropped. */
static void drain_closed_input(kd_session *s)
{
	size_t off = 0;
	const uint32_t max_frame = s->d->cfg->max_frame;
	for (;;) {
		uint32_t n;
		if (codec_frame_check((const uint8_t *)s->rbuf + off, s->rlen - off, max_frame, &n) != KD_FRAME_READY)
			break;
		const char *payload = s->rbuf + off + KD_FRAME_HDR;
		msgpack_object root;
		kd_request req;
		const char *why;
		if (codec_decode_request(payload, n, &s->zone, &root, &req, &why) == 0 &&
		    codec_str_eq(req.op, req.op_len, "produce"))
			dispatch_request(s, &req, payload, n);
		msgpack_zone_clear(&s->zone);
		off += KD_FRAME_HDR + (size_t)n;
	}
	if (off > 0) {
		memmove(s->rbuf, s->rbuf + off, s->rlen - off);
		s->rlen -= off;
	}
}

/* After a close: run what is left, then keep the session (and its outbox)
 * until its held produce is enqueued, or let the outbox go now. */
static void close_drain(kd_session *s)
{
	if (s->close_drained)
		return;
	s->close_drained = true;
	drain_closed_input(s);
	if (s->held) {
		log_info("connection #%llu closed with %llu messages of its produce requests not yet enqueued; "
			 "enqueueing them as room appears",
			 (unsigned long long)s->id, (unsigned long long)ops_held_messages(s));
		s->in_draining = true;
		s->next_draining = s->d->draining;
		s->d->draining = s;
	} else {
		release_outbox(s);
	}
}

void session_close(kd_session *s)
{
	if (s->closing)
		return;
	s->closing = true;
	kd_daemon *d = s->d;
	log_debug("connection #%llu: closed", (unsigned long long)s->id);
	ops_consumer_detach_all(s);
	HASH_DEL(d->sessions, s);
	d->n_sessions--;
	if (s->reading) {
		uv_read_stop((uv_stream_t *)&s->pipe);
		s->reading = false;
	}
	uv_close((uv_handle_t *)&s->pipe, on_handle_closed);
	uv_close((uv_handle_t *)&s->poll_timer, on_handle_closed);
	uv_close((uv_handle_t *)&s->flush_timer, on_handle_closed);
	/* inside session_process_input the buffer is in use: it drains on exit */
	if (!s->processing)
		close_drain(s);
}

void session_abandon_draining(kd_daemon *d)
{
	while (d->draining) {
		kd_session *s = d->draining;
		log_error("shutdown: %llu messages of a closed connection's produce requests were never enqueued",
			  (unsigned long long)ops_held_messages(s));
		ops_release_held(s);
		finish_draining(s);
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	kd_session *s = h->data;
	if (s->rbuf == NULL) {
		s->rbuf = malloc(RBUF_INITIAL);
		s->rcap = s->rbuf ? RBUF_INITIAL : 0;
	}
	if (s->rcap - s->rlen < 4096 && s->rcap < (size_t)s->d->cfg->max_frame + KD_FRAME_HDR) {
		size_t ncap = s->rcap * 2;
		char *nb = realloc(s->rbuf, ncap);
		if (nb) {
			s->rbuf = nb;
			s->rcap = ncap;
		}
	}
	buf->base = s->rbuf ? s->rbuf + s->rlen : NULL;
	buf->len = s->rbuf ? s->rcap - s->rlen : 0;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
	(void)buf;
	kd_session *s = stream->data;
	if (nread < 0) {
		if (nread != UV_EOF)
			log_debug("connection #%llu: read: %s", (unsigned long long)s->id, uv_strerror((int)nread));
		session_close(s);
		return;
	}
	if (nread == 0)
		return;
	s->rlen += (size_t)nread;
	session_process_input(s);
	producers_notify(s->d->producers);
}

static void on_write(uv_write_t *req, int status)
{
	write_req *wr = (write_req *)req;
	kd_session *s = wr->s;
	s->unsent -= wr->len;
	free(wr->buf);
	free(wr);
	if (s->closing)
		return;
	if (status < 0) {
		log_debug("connection #%llu: write: %s", (unsigned long long)s->id, uv_strerror(status));
		session_close(s);
		return;
	}
	if (s->close_after_write && s->unsent == 0) {
		session_close(s);
		return;
	}
	update_reading(s);
}

void session_send(kd_session *s, char *buf, size_t len)
{
	if (s->closing || buf == NULL) {
		free(buf);
		return;
	}
	size_t off = 0;
	if (s->unsent == 0) {
		uv_buf_t b = uv_buf_init(buf, (unsigned)len);
		int n = uv_try_write((uv_stream_t *)&s->pipe, &b, 1);
		if (n == (int)len) {
			free(buf);
			if (s->close_after_write)
				session_close(s);
			return;
		}
		if (n > 0)
			off = (size_t)n;
		else if (n != UV_EAGAIN) {
			log_debug("connection #%llu: write: %s", (unsigned long long)s->id, uv_strerror(n));
			free(buf);
			session_close(s);
			return;
		}
	}
	write_req *wr = malloc(sizeof(*wr));
	if (!wr) {
		free(buf);
		session_close(s);
		return;
	}
	wr->s = s;
	wr->buf = buf;
	wr->len = len - off;
	s->unsent += wr->len;
	uv_buf_t b = uv_buf_init(buf + off, (unsigned)(len - off));
	int r = uv_write(&wr->req, (uv_stream_t *)&s->pipe, &b, 1, on_write);
	if (r != 0) {
		log_debug("connection #%llu: write: %s", (unsigned long long)s->id, uv_strerror(r));
		s->unsent -= wr->len;
		free(buf);
		free(wr);
		session_close(s);
		return;
	}
	update_reading(s);
}

void session_send_writer(kd_session *s, kd_writer *w)
{
	size_t len;
	char *buf = writer_take(w, &len);
	session_send(s, buf, len);
}

void pack_kafka_error(msgpack_packer *pk, int rd_err, const char *message)
{
	rd_kafka_resp_err_t e = (rd_kafka_resp_err_t)rd_err;
	bool retriable = false;
	switch (e) {
	case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
	case RD_KAFKA_RESP_ERR__TRANSPORT:
	case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
	case RD_KAFKA_RESP_ERR__TIMED_OUT:
	case RD_KAFKA_RESP_ERR__QUEUE_FULL:
	case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
	case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
	case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
	case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
	case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
	case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
	case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
	case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
	case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
	case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
	case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
		retriable = true;
		break;
	default:
		break;
	}
	codec_pack_error(pk, KD_ERR_KAFKA_BASE + rd_err, rd_kafka_err2name(e), message ? message : rd_kafka_err2str(e),
			 retriable);
}

static void reply_error_v(kd_session *s, uint64_t id, bool has_id, int code, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	kd_writer w;
	writer_init(&w);
	writer_error(&w, id, has_id, code, kd_err_name(code), msg, kd_err_retriable(code));
	s->d->counters.errors++;
	session_send_writer(s, &w);
}

void session_reply_error(kd_session *s, const kd_request *req, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_error_v(s, req->id, req->has_id, code, fmt, ap);
	va_end(ap);
}

void writer_kafka_error(kd_writer *w, uint64_t id, bool has_id, int rd_err, const char *message)
{
	msgpack_pack_array(&w->pk, 3);
	if (has_id)
		msgpack_pack_uint64(&w->pk, id);
	else
		msgpack_pack_nil(&w->pk);
	pack_kafka_error(&w->pk, rd_err, message);
	msgpack_pack_nil(&w->pk);
}

void session_reply_kafka_error(kd_session *s, const kd_request *req, int rd_err, const char *message)
{
	kd_writer w;
	writer_init(&w);
	writer_kafka_error(&w, req->id, req->has_id, rd_err, message);
	s->d->counters.errors++;
	session_send_writer(s, &w);
}

void session_reply_code(kd_session *s, const kd_request *req, int code, const char *message)
{
	if (kd_err_is_kafka(code))
		session_reply_kafka_error(s, req, code - KD_ERR_KAFKA_BASE, message);
	else
		session_reply_error(s, req, code, "%s", message);
}

static void framing_error(kd_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void framing_error(kd_session *s, const char *fmt, ...)
{
	s->d->counters.bad_frames++;
	char msg[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_info("connection #%llu: framing error: %s; closing it", (unsigned long long)s->id, msg);
	s->close_after_write = true;
	if (s->reading) {
		uv_read_stop((uv_stream_t *)&s->pipe);
		s->reading = false;
	}
	kd_writer w;
	writer_init(&w);
	writer_error(&w, 0, false, KD_ERR_BAD_FRAME, kd_err_name(KD_ERR_BAD_FRAME), msg, false);
	s->d->counters.errors++;
	session_send_writer(s, &w);
}

static bool want_reading(const kd_session *s)
{
	const kd_config *cfg = s->d->cfg;
	return !s->closing && !s->close_after_write && s->held_bytes <= cfg->max_frame &&
	       s->unsent <= cfg->write_high_water &&
	       s->parked < cfg->max_parked;
}

static void update_reading(kd_session *s)
{
	bool want = want_reading(s);
	if (want == s->reading)
		return;
	if (want) {
		if (uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read) == 0)
			s->reading = true;
		/* frames may already be waiting in the buffer */
		if (s->rlen > 0 && !s->processing)
			session_process_input(s);
	} else {
		uv_read_stop((uv_stream_t *)&s->pipe);
		s->reading = false;
	}
}

/* Handles one complete frame payload. */
static bool handle_frame(kd_session *s, const char *payload, uint32_t len)
{
	msgpack_object root;
	kd_request req;
	const char *why = NULL;
	int rc = codec_decode_request(payload, len, &s->zone, &root, &req, &why);
	if (rc == KD_ERR_BAD_FRAME) {
		framing_error(s, "%s", why);
		msgpack_zone_clear(&s->zone);
		return true;
	}
	if (rc == KD_ERR_BAD_REQUEST) {
		s->d->counters.requests++;
		session_reply_error(s, &req, KD_ERR_BAD_REQUEST, "%s", why);
		msgpack_zone_clear(&s->zone);
		return true;
	}
	s->d->counters.requests++;
	dispatch_request(s, &req, payload, len);
	msgpack_zone_clear(&s->zone);
	return true;
}

static void session_process_input(kd_session *s)
{
	if (s->processing)
		return;
	s->processing = true;
	size_t off = 0;
	const uint32_t max_frame = s->d->cfg->max_frame;
	while (!s->closing && !s->close_after_write) {
		uint32_t n;
		int st = codec_frame_check((const uint8_t *)s->rbuf + off, s->rlen - off, max_frame, &n);
		if (st == KD_FRAME_BAD_LENGTH) {
			framing_error(s, "frame length must be 1..%u", max_frame);
			break;
		}
		if (st == KD_FRAME_NEED_MORE) {
			/* make room for the whole frame; bounded by max_frame */
			size_t need = (size_t)n + KD_FRAME_HDR;
			if (n > 0 && need > s->rcap) {
				char *nb = realloc(s->rbuf, need);
				if (!nb) {
					framing_error(s, "cannot buffer a frame of %u bytes", n);
					break;
				}
				s->rbuf = nb;
				s->rcap = need;
			}
			break;
		}
		if (!handle_frame(s, s->rbuf + off + KD_FRAME_HDR, n))
			break;
		off += KD_FRAME_HDR + (size_t)n;
		if (s->recheck) {
			s->recheck = false;
			ops_session_changed(s);
		}
	}
	if (s->close_after_write) {
		off = 0;
		s->rlen = 0; /* after a framing error the rest of the stream cannot be trusted */
	}
	if (off > 0) {
		memmove(s->rbuf, s->rbuf + off, s->rlen - off);
		s->rlen -= off;
	}
	if (s->closing) {
		s->processing = false;
		close_drain(s);
		return;
	}
	/* give memory back after a big frame */
	if (s->rlen == 0 && s->rcap > 4 * RBUF_INITIAL) {
		free(s->rbuf);
		s->rbuf = NULL;
		s->rcap = 0;
	}
	if (s->recheck) {
		s->recheck = false;
		ops_session_changed(s);
	}
	s->processing = false;
	update_reading(s);
}

void session_changed(kd_session *s)
{
	if (s->closing) {
		if (s->in_draining) {
			ops_session_changed(s);
			if (!s->held)
				finish_draining(s);
		}
		return;
	}
	if (s->processing) {
		s->recheck = true;
		return;
	}
	ops_session_changed(s);
	update_reading(s);
}

int session_accept(kd_daemon *d, uv_stream_t *server)
{
	kd_session *s = calloc(1, sizeof(*s));
	if (!s)
		return UV_ENOMEM;
	s->d = d;
	int r = uv_pipe_init(d->loop, &s->pipe, 0);
	if (r != 0) {
		free(s);
		return r;
	}
	s->pipe.data = s;
	s->open_handles = 1;
	msgpack_zone_init(&s->zone, ZONE_CHUNK);
	r = uv_accept(server, (uv_stream_t *)&s->pipe);
	if (r == 0)
		r = uv_timer_init(d->loop, &s->poll_timer);
	if (r == 0) {
		s->open_handles++;
		s->poll_timer.data = s;
		r = uv_timer_init(d->loop, &s->flush_timer);
	}
	if (r == 0) {
		s->open_handles++;
		s->flush_timer.data = s;
	}
	s->id = ++d->next_session_id;
	s->ob = r == 0 ? outbox_create(d->producers, s->id, &session_outbox_ops, s) : NULL;
	if (r == 0 && s->ob == NULL)
		r = UV_ENOMEM;
	HASH_ADD(hh, d->sessions, id, sizeof(s->id), s);
	d->n_sessions++;
	if (r != 0) {
		session_close(s);
		return r;
	}
	d->counters.connections_total++;
	if (d->n_sessions > d->cfg->max_connections) {
		log_warn("connection #%llu refused: max_connections (%u) reached", (unsigned long long)s->id,
			 d->cfg->max_connections);
		d->counters.rejected_connections++;
		s->close_after_write = true;
		kd_writer w;
		writer_init(&w);
		writer_error(&w, 0, false, KD_ERR_INTERNAL, kd_err_name(KD_ERR_INTERNAL), "too many connections",
			     kd_err_retriable(KD_ERR_INTERNAL));
		session_send_writer(s, &w);
		return 0;
	}
	update_reading(s);
	return 0;
}
