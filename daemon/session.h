/* session: one client connection. Owns its read buffer, its write
 * accounting, the requests it parked and its outbox (delivery outcomes).
 *
 * Per-connection memory is bounded (protocol/SPEC.md 5.1): the read buffer
 * holds at most one frame (<= max_frame + 4) plus what one read brings; the
 * daemon stops reading while unsent responses exceed write_high_water, while
 * parked requests reach max_parked, or while held produce requests hold more
 * than max_frame bytes. */
#ifndef KAFKAD_SESSION_H
#define KAFKAD_SESSION_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <uthash.h>
#include <uv.h>

#include "codec.h"
#include "daemon.h"
#include "consumer.h"
#include "producer.h"

/* A produce request that could not be fully enqueued yet (no room), or that
 * arrived while an earlier one was held: it owns a copy of its frame and
 * resumes at `cursor`. Held requests form a FIFO per connection, so order is
 * kept while other requests (poll_reports, ...) are still served. */
typedef struct kd_held_produce {
	struct kd_held_produce *next;
	char *payload;
	size_t len;
	msgpack_zone zone;
	msgpack_object root;
	kd_request req;
	uint64_t first_seq; /* sequence numbers were allocated when it arrived */
	uint32_t cursor;    /* index of the next message to enqueue */
	uint32_t count;     /* messages in the request */
} kd_held_produce;

struct kd_session {
	uv_pipe_t pipe;
	uv_timer_t poll_timer;
	uv_timer_t flush_timer;
	kd_daemon *d;
	uint64_t id;
	UT_hash_handle hh;
	int open_handles;

	char *rbuf;
	size_t rlen, rcap;
	size_t unsent;          /* bytes handed to uv_write, not yet written */
	uint32_t parked;        /* background jobs + waiters in flight */
	bool reading;
	bool closing;
	bool close_after_write; /* framing error: close once the error frame is out */
	bool processing;        /* inside session_process_input */
	bool recheck;           /* changed() arrived while processing */
	bool close_drained;     /* close_drain() ran */
	bool in_draining;       /* on d->draining: closed, held produces still enqueueing */
	msgpack_zone zone;

	kd_outbox *ob;
	kd_held_produce *held;      /* FIFO head: the request being enqueued */
	kd_held_produce *held_tail;
	size_t held_bytes;          /* frame bytes in the FIFO; bounded by max_frame */
	kd_session *next_draining;

	struct kd_attach **attaches; /* consumer handles opened on this connection */
	uint32_t n_attaches, cap_attaches;
	struct consume_park *consume_parks;

	bool poll_parked;
	uint64_t poll_id;
	uint64_t poll_max;
	bool flush_parked;
	uint64_t flush_id;
};

/* Accepts a connection from server; returns 0 or a libuv error. */
int session_accept(kd_daemon *d, uv_stream_t *server);
/* Closes the connection; the session frees itself in its close callbacks. */
void session_close(kd_session *s);

/* Shutdown: drops the held produces of closed connections (logged). */
void session_abandon_draining(kd_daemon *d);

/* Sends a finished frame (takes ownership of buf, a malloc'd block). */
void session_send(kd_session *s, char *buf, size_t len);
/* Sends writer's frame. */
void session_send_writer(kd_session *s, kd_writer *w);
void session_reply_error(kd_session *s, const kd_request *req, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void session_reply_kafka_error(kd_session *s, const kd_request *req, int rd_err, const char *message);
/* Replies with a daemon or Kafka error code (as kd_err_is_kafka tells). */
void session_reply_code(kd_session *s, const kd_request *req, int code, const char *message);
/* Writes a complete [id, kafka-error, nil] response into w. */
void writer_kafka_error(kd_writer *w, uint64_t id, bool has_id, int rd_err, const char *message);
/* Re-evaluates parked requests and backpressure (after outbox changes). */
void session_changed(kd_session *s);

/* Packs a librdkafka error as a protocol error map. */
void pack_kafka_error(msgpack_packer *pk, int rd_err, const char *message);

#endif
