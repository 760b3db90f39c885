/* produce, poll_reports and flush: the producer side of the protocol. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "log.h"
#include "ops.h"
#include "partitioner.h"
#include "session.h"

#define DEFAULT_POLL_MAX 65536
#define DEFAULT_FLUSH_TIMEOUT_MS 10000

typedef struct produce_args {
	kd_cluster *cluster;
	kd_topic *topic;
	int ack;
	int partitioner;
	const msgpack_object *single;         /* args map when there is no `messages` */
	const msgpack_object_array *messages;
	uint32_t count;
} produce_args;

static const msgpack_object *message_at(const produce_args *pa, uint32_t i)
{
	return pa->messages ? &pa->messages->ptr[i] : pa->single;
}

/* Checks one message (index -1: the args map itself); writes the problem
 * into why. The common case, bare bytes, costs one comparison. */
static bool validate_message(const msgpack_object *m, char *why, size_t whylen, int64_t index)
{
	const char *p;
	uint32_t n;
	if (m->type == MSGPACK_OBJECT_BIN || m->type == MSGPACK_OBJECT_STR)
		return true;
	char where[32];
	if (index < 0)
		snprintf(where, sizeof(where), "args");
	else
		snprintf(where, sizeof(where), "messages[%lld]", (long long)index);
	if (m->type != MSGPACK_OBJECT_MAP) {
		snprintf(why, whylen, "%s: a message must be a map or bytes", where);
		return false;
	}
	if (codec_get_bytes(m, "value", &p, &n) < 0) {
		snprintf(why, whylen, "%s.value: expected bytes or nil", where);
		return false;
	}
	if (codec_get_bytes(m, "key", &p, &n) < 0) {
		snprintf(why, whylen, "%s.key: expected bytes or nil", where);
		return false;
	}
	int64_t v;
	int r = codec_get_int(m, "timestamp", &v);
	if (r < 0 || (r > 0 && v < 0)) {
		snprintf(why, whylen, "%s.timestamp: expected a non-negative integer (ms since epoch)", where);
		return false;
	}
	r = codec_get_int(m, "partition", &v);
	if (r < 0 || (r > 0 && (v < -1 || v > INT32_MAX))) {
		snprintf(why, whylen, "%s.partition: expected an integer >= 0 (or -1 for the partitioner)", where);
		return false;
	}
	const msgpack_object_array *h;
	r = codec_get_array(m, "headers", &h);
	if (r < 0) {
		snprintf(why, whylen, "%s.headers: expected a list of [name, value] pairs", where);
		return false;
	}
	for (uint32_t i = 0; r > 0 && i < h->size; i++) {
		const msgpack_object *e = &h->ptr[i];
		if (e->type != MSGPACK_OBJECT_ARRAY || e->via.array.size != 2 ||
		    e->via.array.ptr[0].type != MSGPACK_OBJECT_STR ||
		    (e->via.array.ptr[1].type != MSGPACK_OBJECT_NIL &&
		     codec_obj_bytes(&e->via.array.ptr[1], &p, &n) < 0)) {
			snprintf(why, whylen, "%s.headers[%u]: expected [str name, bytes-or-nil value]", where, i);
			return false;
		}
	}
	return true;
}

/* Parses and validates a produce request. Returns 0 or an error code with
 * the message in why. */
static int parse_produce(kd_session *s, const kd_request *req, produce_args *pa, char *why, size_t whylen)
{
	memset(pa, 0, sizeof(*pa));
	const msgpack_object *args = req->args;
	const char *str;
	uint32_t len = 0;
	int r = codec_get_str(args, "cluster", &str, &len);
	if (r < 0) {
		snprintf(why, whylen, "cluster: expected a string");
		return KD_ERR_INVALID_ARGUMENT;
	}
	pa->cluster = producers_cluster(s->d->producers, r > 0 ? str : NULL, r > 0 ? len : 0);
	if (pa->cluster == NULL) {
		char q[KD_QUOTE_MAX];
		snprintf(why, whylen, "no cluster named '%s'", codec_quote(q, sizeof(q), str, len));
		return KD_ERR_UNKNOWN_CLUSTER;
	}
	r = codec_get_str(args, "topic", &str, &len);
	if (r <= 0) {
		snprintf(why, whylen, "topic: %s", r == 0 ? "required" : "expected a string");
		return KD_ERR_INVALID_ARGUMENT;
	}
	pa->topic = cluster_topic(pa->cluster, str, len);
	if (pa->topic == NULL) {
		char q[KD_QUOTE_MAX];
		snprintf(why, whylen, "topic: '%s' is not a valid topic name ([A-Za-z0-9._-], 1..249 chars)",
			 codec_quote(q, sizeof(q), str, len));
		return KD_ERR_INVALID_ARGUMENT;
	}
	pa->ack = KD_ACK_REPORT;
	r = codec_get_str(args, "ack", &str, &len);
	if (r < 0) {
		snprintf(why, whylen, "ack: expected a string");
		return KD_ERR_INVALID_ARGUMENT;
	}
	if (r > 0) {
		if (codec_str_eq(str, len, "none"))
			pa->ack = KD_ACK_NONE;
		else if (codec_str_eq(str, len, "report"))
			pa->ack = KD_ACK_REPORT;
		else if (codec_str_eq(str, len, "wait"))
			pa->ack = KD_ACK_WAIT;
		else {
			snprintf(why, whylen, "ack: must be \"none\", \"report\" or \"wait\"");
			return KD_ERR_INVALID_ARGUMENT;
		}
	}
	pa->partitioner = KD_PART_DEFAULT;
	r = codec_get_str(args, "partitioner", &str, &len);
	if (r < 0) {
		snprintf(why, whylen, "partitioner: expected a string");
		return KD_ERR_INVALID_ARGUMENT;
	}
	if (r > 0) {
		int id = partitioner_parse_n(str, len);
		if (id < 0 || id >= KD_PART_COUNT) {
			snprintf(why, whylen, "partitioner: must be one of random, consistent, consistent_random, murmur2, "
					      "murmur2_random, fnv1a, pykafka_hashing (fnv1a_random only as a topic default)");
			return KD_ERR_INVALID_ARGUMENT;
		}
		pa->partitioner = id;
	}
	r = codec_get_array(args, "messages", &pa->messages);
	if (r < 0) {
		snprintf(why, whylen, "messages: expected a list");
		return KD_ERR_INVALID_ARGUMENT;
	}
	if (r == 0) {
		pa->messages = NULL;
		pa->single = args;
		pa->count = 1;
		return validate_message(args, why, whylen, -1) ? 0 : KD_ERR_INVALID_ARGUMENT;
	}
	if (pa->messages->size > s->d->cfg->max_batch) {
		snprintf(why, whylen, "messages: %u messages exceed max_batch (%u)", pa->messages->size,
			 s->d->cfg->max_batch);
		return KD_ERR_TOO_LARGE;
	}
	pa->count = pa->messages->size;
	for (uint32_t i = 0; i < pa->count; i++)
		if (!validate_message(&pa->messages->ptr[i], why, whylen, i))
			return KD_ERR_INVALID_ARGUMENT;
	return 0;
}

/* Builds the librdkafka view of a validated message. */
static void to_kd_message(const msgpack_object *m, kd_message *out)
{
	memset(out, 0, sizeof(*out));
	out->partition = RD_KAFKA_PARTITION_UA;
	const char *p;
	uint32_t n;
	if (m->type != MSGPACK_OBJECT_MAP) {
		codec_obj_bytes(m, &p, &n);
		out->value = p;
		out->value_len = n;
		return;
	}
	if (codec_get_bytes(m, "value", &p, &n) > 0) {
		out->value = p;
		out->value_len = n;
	}
	if (codec_get_bytes(m, "key", &p, &n) > 0) {
		out->key = p;
		out->key_len = n;
	}
	int64_t v;
	if (codec_get_int(m, "timestamp", &v) > 0)
		out->timestamp = v;
	if (codec_get_int(m, "partition", &v) > 0 && v >= 0)
		out->partition = (int32_t)v;
	const msgpack_object_array *h;
	if (codec_get_array(m, "headers", &h) > 0 && h->size > 0) {
		out->headers = rd_kafka_headers_new(h->size);
		for (uint32_t i = 0; i < h->size; i++) {
			const msgpack_object *name = &h->ptr[i].via.array.ptr[0];
			const msgpack_object *val = &h->ptr[i].via.array.ptr[1];
			const char *vp = NULL;
			uint32_t vn = 0;
			if (val->type != MSGPACK_OBJECT_NIL)
				codec_obj_bytes(val, &vp, &vn);
			rd_kafka_header_add(out->headers, name->via.str.ptr, (ssize_t)name->via.str.size, vp, (ssize_t)vn);
		}
	}
}

static void pack_runs(msgpack_packer *pk, const kd_run *runs, uint32_t n)
{
	msgpack_pack_array(pk, n);
	for (uint32_t i = 0; i < n; i++) {
		msgpack_pack_array(pk, 5);
		msgpack_pack_uint64(pk, runs[i].seq);
		msgpack_pack_uint32(pk, runs[i].count);
		msgpack_pack_int32(pk, runs[i].partition);
		msgpack_pack_int64(pk, runs[i].offset);
		if (runs[i].err)
			pack_kafka_error(pk, runs[i].err, NULL);
		else
			msgpack_pack_nil(pk);
	}
}

/* Packs `"reports": [...]` with up to max messages of the outbox's runs. */
static void pack_reports_field(msgpack_packer *pk, kd_outbox *ob, uint64_t max)
{
	pack_cstr(pk, "reports");
	uint32_t cap = ob->runs_len ? ob->runs_len : 1;
	kd_run *runs = malloc(cap * sizeof(*runs));
	uint32_t n = runs ? outbox_take(ob, max, runs, cap) : 0;
	pack_runs(pk, runs, n);
	free(runs);
}

enum run_result { RUN_DONE, RUN_HELD };

/* How many more report-mode messages the connection may have without a
 * collected outcome (max_pending). Nobody collects a closed connection's
 * reports: only librdkafka's queue limits it. */
static uint64_t report_room(const kd_session *s)
{
	if (s->closing)
		return UINT64_MAX;
	uint64_t used = s->ob->inflight_reported + s->ob->queued;
	return used < s->d->cfg->max_pending ? s->d->cfg->max_pending - used : 0;
}

/* Enqueues the run of bare values (the compact form) that starts at *cursor,
 * up to KD_SEND_VALUES_MAX of them, with one librdkafka call. Returns false
 * when it must stop (no room), having advanced *cursor past what it took. */
static bool produce_values(kd_session *s, const produce_args *pa, uint64_t first_seq, uint32_t *cursor)
{
	kd_producers *prod = s->d->producers;
	uint32_t i = *cursor;
	uint64_t limit = pa->count - i;
	if (limit > KD_SEND_VALUES_MAX)
		limit = KD_SEND_VALUES_MAX;
	if (pa->ack == KD_ACK_REPORT) {
		uint64_t room = report_room(s);
		if (room == 0)
			return false;
		if (limit > room)
			limit = room;
	}
	kd_value vals[KD_SEND_VALUES_MAX];
	uint32_t n = 0;
	for (; n < limit; n++) {
		const char *p;
		uint32_t len;
		if (codec_obj_bytes(&pa->messages->ptr[i + n], &p, &len) < 0)
			break; /* a message map: the caller's per-message path */
		vals[n] = (kd_value){.ptr = p, .len = len};
	}
	bool full;
	*cursor += producer_send_values(prod, pa->topic, s->ob, pa->ack, pa->partitioner, first_seq + i, vals, n,
					&full);
	if (full) {
		outbox_wait_room(prod, s->ob);
		return false;
	}
	return true;
}

/* Runs of bare values go to librdkafka in batches, message maps one by one. */
static enum run_result enqueue_messages(kd_session *s, const produce_args *pa, uint64_t first_seq, uint32_t *cursor)
{
	kd_producers *prod = s->d->producers;
	while (*cursor < pa->count) {
		uint32_t i = *cursor;
		const msgpack_object *m0 = pa->messages ? &pa->messages->ptr[i] : NULL;
		if (m0 && (m0->type == MSGPACK_OBJECT_BIN || m0->type == MSGPACK_OBJECT_STR)) {
			if (!produce_values(s, pa, first_seq, cursor))
				return RUN_HELD;
			continue;
		}
		if (pa->ack == KD_ACK_REPORT && report_room(s) == 0)
			return RUN_HELD;
		kd_message m;
		to_kd_message(message_at(pa, i), &m);
		uint64_t seq = pa->ack == KD_ACK_NONE ? 0 : first_seq + i;
		rd_kafka_resp_err_t err = producer_send(prod, pa->topic, s->ob, pa->ack, pa->partitioner, seq, &m);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
			(*cursor)++;
			continue;
		}
		if (m.headers)
			rd_kafka_headers_destroy(m.headers);
		if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
			outbox_wait_room(prod, s->ob);
			return RUN_HELD;
		}
		outbox_record_failure(prod, s->ob, pa->ack, seq, m.partition, err);
		(*cursor)++;
	}
	return RUN_DONE;
}

/* Enqueues messages from *cursor on. Stops (RUN_HELD) when there is no room:
 * librdkafka's queue is full or the connection reached max_pending. When
 * the caller waits for the outcome (ack wait), what was enqueued is sent at
 * once rather than after linger.ms. */
static enum run_result produce_messages(kd_session *s, const produce_args *pa, uint64_t first_seq, uint32_t *cursor)
{
	uint32_t before = *cursor;
	enum run_result rr = enqueue_messages(s, pa, first_seq, cursor);
	if (pa->ack == KD_ACK_WAIT && *cursor > before)
		cluster_send_now(pa->cluster);
	return rr;
}

static void answer_produce(kd_session *s, const kd_request *req, const produce_args *pa, uint64_t first_seq)
{
	if (pa->ack == KD_ACK_WAIT)
		return; /* answered by its waiter */
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, req->id, req->has_id);
	if (pa->ack == KD_ACK_NONE) {
		msgpack_pack_map(&w.pk, 1);
		pack_kv_uint(&w.pk, "count", pa->count);
	} else {
		msgpack_pack_map(&w.pk, 3);
		pack_kv_uint(&w.pk, "count", pa->count);
		pack_kv_uint(&w.pk, "seq", first_seq);
		pack_reports_field(&w.pk, s->ob, DEFAULT_POLL_MAX);
	}
	session_send_writer(s, &w);
}

static void free_held(kd_held_produce *h)
{
	msgpack_zone_destroy(&h->zone);
	free(h->payload);
	free(h);
}

/* Removes the FIFO head. */
static void pop_held(kd_session *s)
{
	kd_held_produce *h = s->held;
	s->held = h->next;
	if (!s->held)
		s->held_tail = NULL;
	s->held_bytes -= h->len;
	free_held(h);
}

void ops_release_held(kd_session *s)
{
	while (s->held)
		pop_held(s);
}

uint64_t ops_held_messages(const kd_session *s)
{
	uint64_t n = 0;
	for (const kd_held_produce *h = s->held; h; h = h->next)
		n += h->count - h->cursor;
	return n;
}

/* Appends a produce request to the FIFO: copies its frame so the read buffer
 * can move on to other requests. */
static bool hold_produce(kd_session *s, const char *payload, uint32_t len, uint64_t first_seq, uint32_t cursor,
			 uint32_t count)
{
	kd_held_produce *h = calloc(1, sizeof(*h));
	if (!h)
		return false;
	h->payload = malloc(len);
	if (!h->payload) {
		free(h);
		return false;
	}
	memcpy(h->payload, payload, len);
	h->len = len;
	msgpack_zone_init(&h->zone, 4096);
	const char *why;
	/* the frame decoded once already, so this cannot fail */
	codec_decode_request(h->payload, len, &h->zone, &h->root, &h->req, &why);
	h->first_seq = first_seq;
	h->cursor = cursor;
	h->count = count;
	if (s->held_tail)
		s->held_tail->next = h;
	else
		s->held = h;
	s->held_tail = h;
	s->held_bytes += len;
	return true;
}

/* Enqueues what the held requests have left, in order, until room runs out. */
static void resume_held(kd_session *s)
{
	while (s->held) {
		kd_held_produce *h = s->held;
		produce_args pa;
		char why[256];
		if (parse_produce(s, &h->req, &pa, why, sizeof(why)) != 0) {
			/* cannot happen: it parsed when it arrived */
			session_reply_error(s, &h->req, KD_ERR_INTERNAL, "held produce no longer parses: %s", why);
			pop_held(s);
			continue;
		}
		if (produce_messages(s, &pa, h->first_seq, &h->cursor) == RUN_HELD)
			return;
		/* answer after unlinking: a failed write may close the session */
		kd_request req = h->req;
		produce_args done = pa;
		uint64_t first_seq = h->first_seq;
		s->held = h->next;
		if (!s->held)
			s->held_tail = NULL;
		s->held_bytes -= h->len;
		answer_produce(s, &req, &done, first_seq);
		free_held(h);
	}
}

void op_produce(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	if (s->d->shutting_down) {
		session_reply_error(s, req, KD_ERR_SHUTTING_DOWN, "the daemon is shutting down");
		return;
	}
	produce_args pa;
	char why[256];
	int rc = parse_produce(s, req, &pa, why, sizeof(why));
	if (rc != 0) {
		session_reply_error(s, req, rc, "%s", why);
		return;
	}
	kd_outbox *ob = s->ob;
	uint64_t first_seq = 0;
	if (pa.ack != KD_ACK_NONE) {
		if (ob->next_seq + pa.count > KD_MAX_SEQ) {
			session_reply_error(s, req, KD_ERR_INVALID_STATE, "sequence numbers exhausted; reconnect");
			return;
		}
		first_seq = ob->next_seq;
		ob->next_seq += pa.count;
	}
	if (pa.ack == KD_ACK_WAIT) {
		if (pa.count == 0) {
			kd_waiter empty = {.req_id = req->id};
			ops_answer_waiter(s, &empty);
			return;
		}
		if (!outbox_add_waiter(ob, req->id, first_seq, pa.count)) {
			session_reply_error(s, req, KD_ERR_INTERNAL, "out of memory");
			return;
		}
		s->parked++;
	}
	uint32_t cursor = 0;
	/* behind held requests it waits its turn (message order) */
	if (!s->held && produce_messages(s, &pa, first_seq, &cursor) == RUN_DONE) {
		answer_produce(s, req, &pa, first_seq);
		return;
	}
	if (!hold_produce(s, payload, len, first_seq, cursor, pa.count)) {
		log_error("connection #%llu: out of memory holding a produce request", (unsigned long long)s->id);
		session_close(s);
	}
}

void ops_answer_waiter(kd_session *s, const kd_waiter *w)
{
	kd_writer wr;
	writer_init(&wr);
	writer_begin_ok(&wr, w->req_id, true);
	msgpack_pack_map(&wr.pk, 2);
	pack_kv_uint(&wr.pk, "count", w->count);
	pack_cstr(&wr.pk, "results");
	msgpack_pack_array(&wr.pk, w->count);
	for (uint32_t i = 0; i < w->count; i++) {
		const kd_result *r = &w->results[i];
		msgpack_pack_array(&wr.pk, 3);
		msgpack_pack_int32(&wr.pk, r->partition);
		msgpack_pack_int64(&wr.pk, r->err ? -1 : r->offset);
		if (r->err)
			pack_kafka_error(&wr.pk, r->err, NULL);
		else
			msgpack_pack_nil(&wr.pk);
	}
	session_send_writer(s, &wr);
}

static void answer_poll(kd_session *s)
{
	s->poll_parked = false;
	uv_timer_stop(&s->poll_timer);
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, s->poll_id, true);
	msgpack_pack_map(&w.pk, 2);
	pack_reports_field(&w.pk, s->ob, s->poll_max);
	pack_kv_uint(&w.pk, "pending", s->ob->inflight_reported);
	session_send_writer(s, &w);
}

/* Messages of this connection without an outcome, held ones included. */
static uint64_t unfinished(const kd_session *s)
{
	return s->ob->inflight + ops_held_messages(s);
}

static void answer_flush(kd_session *s)
{
	s->flush_parked = false;
	uv_timer_stop(&s->flush_timer);
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, s->flush_id, true);
	msgpack_pack_map(&w.pk, 1);
	pack_kv_uint(&w.pk, "remaining", unfinished(s));
	session_send_writer(s, &w);
}

void ops_session_changed(kd_session *s)
{
	if (s->poll_parked && s->ob->queued > 0)
		answer_poll(s);
	resume_held(s);
	if (s->flush_parked && unfinished(s) == 0)
		answer_flush(s);
}

static void on_poll_timeout(uv_timer_t *t)
{
	kd_session *s = t->data;
	if (s->poll_parked)
		answer_poll(s);
}

static void on_flush_timeout(uv_timer_t *t)
{
	kd_session *s = t->data;
	if (s->flush_parked)
		answer_flush(s);
}

/* Reads an optional non-negative integer argument. */
static bool get_nonneg(kd_session *s, const kd_request *req, const char *key, int64_t max, int64_t *v)
{
	int r = codec_get_int(req->args, key, v);
	if (r < 0 || (r > 0 && (*v < 0 || *v > max))) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "%s: expected an integer in [0, %lld]", key,
				    (long long)max);
		return false;
	}
	return true;
}

void op_poll_reports(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	int64_t max = DEFAULT_POLL_MAX, timeout = 0;
	if (!get_nonneg(s, req, "max", INT64_MAX, &max) || !get_nonneg(s, req, "timeout_ms", 3600000, &timeout))
		return;
	if (max == 0)
		max = DEFAULT_POLL_MAX;
	if (s->poll_parked) {
		session_reply_error(s, req, KD_ERR_INVALID_STATE, "a poll_reports is already waiting on this connection");
		return;
	}
	s->poll_id = req->id;
	s->poll_max = (uint64_t)max;
	s->poll_parked = true;
	if (s->ob->queued > 0 || timeout == 0) {
		answer_poll(s);
		resume_held(s); /* collecting reports may make room */
		return;
	}
	uv_timer_start(&s->poll_timer, on_poll_timeout, (uint64_t)timeout, 0);
}

void op_flush(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	int64_t timeout = DEFAULT_FLUSH_TIMEOUT_MS;
	if (!get_nonneg(s, req, "timeout_ms", 3600000, &timeout))
		return;
	if (s->flush_parked) {
		session_reply_error(s, req, KD_ERR_INVALID_STATE, "a flush is already waiting on this connection");
		return;
	}
	s->flush_id = req->id;
	s->flush_parked = true;
	if (unfinished(s) == 0 || timeout == 0) {
		answer_flush(s);
		return;
	}
	/* the caller waits for its messages: send what lingers now (of every
	 * cluster: the connection may have produced to any of them) */
	if (s->ob->inflight > 0) {
		size_t n = producers_count(s->d->producers);
		for (size_t i = 0; i < n; i++)
			cluster_send_now(producers_cluster_at(s->d->producers, i));
	}
	uv_timer_start(&s->flush_timer, on_flush_timeout, (uint64_t)timeout, 0);
}
