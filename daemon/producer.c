#include "producer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uthash.h>

#include "codec.h"
#include "log.h"
#include "partitioner.h"

_Static_assert(sizeof(void *) == 8, "message opaques need 64-bit pointers");

#define EVENTS_PER_WAKEUP 64
/* How long a send-now flush lets librdkafka ignore linger.ms at most (it
 * ends earlier once nothing is left in flight); longer than any plausible
 * wait for a broker thread to wake, short enough not to undo batching. */
#define SEND_NOW_WINDOW_MAX_MS 10

/* Unkeyed runs: librdkafka's own sticky partitioner reads the clock twice
 * and takes the partition's reference and lock per message (about a third
 * of the daemon's CPU per message, measured). For runs of bare values the
 * daemon picks the partition itself, with the same policy (a random
 * partition that has a leader, kept for sticky.partitioning.linger.ms), and
 * hands librdkafka the whole run for that one partition. Which partitions
 * exist and have a leader comes from a metadata snapshot fetched on the
 * thread pool (topic_meta_*); until the first one arrives, or when no
 * partition has a leader, the run goes to librdkafka's partitioner as
 * before. */
#define META_REFRESH_MS 10000 /* snapshot age at which it is fetched again */
#define META_RETRY_MS 1000    /* at most one fetch a second after an error */
#define META_TIMEOUT_MS 2000  /* rd_kafka_metadata's; bounds shutdown too */

struct kd_topic {
	char *name;
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt;
	kd_cluster *cluster;
	int default_partitioner;
	/* loop thread only; leader_ok (part_cnt entries, owned) is replaced
	 * whole by topic_meta_done */
	int32_t part_cnt; /* 0: no snapshot yet */
	uint8_t *leader_ok;
	uint64_t meta_due;     /* uv_now() at which to fetch a new snapshot */
	uint64_t meta_started; /* uv_now() of the last fetch started */
	int32_t sticky; /* the partition unkeyed runs go to until sticky_until */
	uint64_t sticky_until;
	UT_hash_handle hh;
};

static void topic_meta_refresh(kd_topic *t, uint64_t now);

/* A delivery failure may mean the snapshot is stale (leader gone, topic
 * recreated): fetch a new one at the next unkeyed run. */
static void topic_meta_stale(kd_topic *t)
{
	if (t)
		t->meta_due = 0;
}

struct kd_cluster {
	kd_producers *owner;
	const kd_cluster_conf *conf;
	rd_kafka_t *rk;
	rd_kafka_queue_t *mainq;
	int pipefd[2];
	uv_poll_t poll;
	uv_idle_t idle;
	bool handles_open;
	int default_partitioner;
	char *stats_json;
	kd_topic *topics;
	/* send-now (cluster_send_now): a helper thread that calls
	 * rd_kafka_flush() when asked. fl_started is the loop thread's;
	 * fl_requested and fl_stop are guarded by fl_mu. */
	double linger_ms; /* the producer's linger.ms; 0: nothing to skip */
	int fl_window_ms;
	bool fl_started, fl_failed, fl_requested, fl_stop;
	uv_thread_t fl_thread;
	uv_mutex_t fl_mu;
	uv_cond_t fl_cv;
	/* sticky.partitioning.linger.ms; 0: librdkafka picks per message */
	int sticky_ms;
	uint64_t rng; /* xorshift64 state for picking sticky partitions */
	/* a topic's metadata fetch is on the thread pool: one per cluster at a
	 * time, so that with the broker down (each fetch waits out its
	 * timeout) many topics in use cannot occupy the whole pool */
	bool meta_busy;
};

typedef struct undelivered {
	char *topic;
	uint64_t count;
	UT_hash_handle hh;
} undelivered;

struct kd_producers {
	uv_loop_t *loop;
	const kd_config *cfg;
	kd_cluster *clusters;
	size_t n_clusters;
	kd_outbox **slots;
	uint32_t n_slots;   /* slots ever used (high-water mark) */
	uint32_t cap_slots;
	uint32_t *free_list; /* slots whose outbox was freed, reusable */
	uint32_t n_free;
	kd_outbox *dirty;
	kd_outbox *blocked;
	kd_producer_counters counters;
	bool shutting_down;
	undelivered *tally;
};

/* --- opaque packing ------------------------------------------------------ */

static void *pack_opaque(int ack, int part, uint32_t slot, uint64_t seq)
{
	uint64_t v = ((uint64_t)ack << 62) | ((uint64_t)(part & 7) << 59) | ((uint64_t)slot << KD_SEQ_BITS) |
		     (seq & KD_MAX_SEQ);
	return (void *)(uintptr_t)v;
}

static void unpack_opaque(void *op, int *ack, int *part, uint32_t *slot, uint64_t *seq)
{
	uint64_t v = (uint64_t)(uintptr_t)op;
	*ack = (int)(v >> 62);
	*part = (int)((v >> 59) & 7);
	*slot = (uint32_t)((v >> KD_SEQ_BITS) & (KD_MAX_SLOTS - 1));
	*seq = v & KD_MAX_SEQ;
}

/* Runs on librdkafka threads: reads only the opaque and the immutable topic. */
static int32_t partitioner_cb(const rd_kafka_topic_t *rkt, const void *key, size_t keylen, int32_t partition_cnt,
			      void *rkt_opaque, void *msg_opaque)
{
	const kd_topic *t = rkt_opaque;
	int ack, part;
	uint32_t slot;
	uint64_t seq;
	unpack_opaque(msg_opaque, &ack, &part, &slot, &seq);
	if (part == KD_PART_DEFAULT)
		part = t->default_partitioner;
	return partitioner_pick(part, rkt, key, keylen, partition_cnt);
}

/* --- outboxes ------------------------------------------------------------ */

kd_outbox *outbox_create(kd_producers *p, uint64_t conn_id, const kd_outbox_ops *ops, void *owner)
{
	uint32_t slot;
	if (p->n_free > 0) {
		slot = p->free_list[--p->n_free];
	} else {
		if (p->n_slots >= KD_MAX_SLOTS)
			return NULL;
		if (p->n_slots == p->cap_slots) {
			uint32_t cap = p->cap_slots ? p->cap_slots * 2 : 64;
			kd_outbox **ns = realloc(p->slots, cap * sizeof(*ns));
			uint32_t *nf = realloc(p->free_list, cap * sizeof(*nf));
			if (ns)
				p->slots = ns;
			if (nf)
				p->free_list = nf;
			if (!ns || !nf)
				return NULL;
			p->cap_slots = cap;
		}
		slot = p->n_slots++;
	}
	kd_outbox *ob = calloc(1, sizeof(*ob));
	if (!ob) {
		p->free_list[p->n_free++] = slot;
		return NULL;
	}
	ob->slot = slot;
	ob->conn_id = conn_id;
	ob->next_seq = 1;
	ob->ops = ops;
	ob->owner = owner;
	p->slots[slot] = ob;
	return ob;
}

static void free_waiters(kd_waiter *w)
{
	while (w) {
		kd_waiter *n = w->next;
		free(w);
		w = n;
	}
}

static void unlink_from(kd_outbox **head, kd_outbox *ob, bool dirty_list)
{
	for (kd_outbox **pp = head; *pp; pp = dirty_list ? &(*pp)->next_dirty : &(*pp)->next_blocked) {
		if (*pp == ob) {
			*pp = dirty_list ? ob->next_dirty : ob->next_blocked;
			return;
		}
	}
}

static void outbox_free(kd_producers *p, kd_outbox *ob)
{
	p->slots[ob->slot] = NULL;
	p->free_list[p->n_free++] = ob->slot;
	free_waiters(ob->waiters);
	free(ob->runs);
	free(ob);
}

void outbox_orphan(kd_producers *p, kd_outbox *ob)
{
	if (ob == NULL)
		return;
	if (ob->dirty) {
		unlink_from(&p->dirty, ob, true);
		ob->dirty = false;
	}
	if (ob->blocked) {
		unlink_from(&p->blocked, ob, false);
		ob->blocked = false;
	}
	ob->owner = NULL;
	ob->ops = NULL;
	free_waiters(ob->waiters);
	ob->waiters = NULL;
	/* outcomes the connection never collected still count */
	for (uint32_t i = 0; i < ob->runs_len; i++) {
		const kd_run *r = &ob->runs[(ob->runs_head + i) % ob->runs_cap];
		if (r->err)
			p->counters.orphan_failed += r->count;
		else
			p->counters.orphan_delivered += r->count;
	}
	ob->runs_len = 0;
	ob->queued = 0;
	if (ob->inflight == 0)
		outbox_free(p, ob);
	else
		log_debug("connection #%llu closed with %llu messages in flight; they will still be delivered",
			  (unsigned long long)ob->conn_id, (unsigned long long)ob->inflight);
}

void outbox_wait_room(kd_producers *p, kd_outbox *ob)
{
	if (ob->blocked)
		return;
	ob->blocked = true;
	ob->next_blocked = p->blocked;
	p->blocked = ob;
}

static void mark_dirty(kd_producers *p, kd_outbox *ob)
{
	if (ob->dirty || ob->owner == NULL)
		return;
	ob->dirty = true;
	ob->next_dirty = p->dirty;
	p->dirty = ob;
}

static bool push_run(kd_outbox *ob, uint64_t seq, int32_t partition, int64_t offset, int32_t err)
{
	if (ob->runs_len > 0) {
		kd_run *last = &ob->runs[(ob->runs_head + ob->runs_len - 1) % ob->runs_cap];
		if (last->seq + last->count == seq && last->partition == partition && last->err == err &&
		    ((offset < 0 && last->offset < 0) || (last->offset >= 0 && last->offset + last->count == offset))) {
			last->count++;
			ob->queued++;
			return true;
		}
	}
	if (ob->runs_len == ob->runs_cap) {
		uint32_t cap = ob->runs_cap ? ob->runs_cap * 2 : 16;
		kd_run *nr = malloc(cap * sizeof(*nr));
		if (!nr)
			return false;
		for (uint32_t i = 0; i < ob->runs_len; i++)
			nr[i] = ob->runs[(ob->runs_head + i) % ob->runs_cap];
		free(ob->runs);
		ob->runs = nr;
		ob->runs_cap = cap;
		ob->runs_head = 0;
	}
	ob->runs[(ob->runs_head + ob->runs_len) % ob->runs_cap] =
		(kd_run){.seq = seq, .count = 1, .partition = partition, .offset = offset < 0 ? -1 : offset, .err = err};
	ob->runs_len++;
	ob->queued++;
	return true;
}

uint32_t outbox_take(kd_outbox *ob, uint64_t max, kd_run *out, uint32_t out_cap)
{
	uint32_t n = 0;
	while (ob->runs_len > 0 && max > 0 && n < out_cap) {
		kd_run *r = &ob->runs[ob->runs_head];
		out[n] = *r;
		if (r->count > max) {
			out[n].count = (uint32_t)max;
			r->seq += max;
			if (r->offset >= 0)
				r->offset += (int64_t)max;
			r->count -= (uint32_t)max;
			ob->queued -= max;
			return n + 1;
		}
		max -= r->count;
		ob->queued -= r->count;
		ob->runs_head = (ob->runs_head + 1) % ob->runs_cap;
		ob->runs_len--;
		n++;
	}
	return n;
}

kd_waiter *outbox_add_waiter(kd_outbox *ob, uint64_t req_id, uint64_t first_seq, uint32_t count)
{
	kd_waiter *w = calloc(1, sizeof(*w) + (size_t)count * sizeof(kd_result));
	if (!w)
		return NULL;
	w->req_id = req_id;
	w->first_seq = first_seq;
	w->count = count;
	w->remaining = count;
	kd_waiter **tail = &ob->waiters;
	while (*tail)
		tail = &(*tail)->next;
	*tail = w;
	return w;
}

/* Applies one outcome to its outbox (already looked up and owned). */
static void apply_outcome(kd_producers *p, kd_outbox *ob, int ack, uint64_t seq, int32_t partition, int64_t offset,
			  int32_t err)
{
	if (ack == KD_ACK_REPORT) {
		if (!push_run(ob, seq, partition, offset, err))
			log_error("out of memory queueing a delivery report for connection #%llu",
				  (unsigned long long)ob->conn_id);
	} else if (ack == KD_ACK_WAIT) {
		for (kd_waiter **pw = &ob->waiters; *pw; pw = &(*pw)->next) {
			kd_waiter *w = *pw;
			if (seq < w->first_seq || seq >= w->first_seq + w->count)
				continue;
			w->results[seq - w->first_seq] = (kd_result){.offset = offset, .partition = partition, .err = err};
			if (--w->remaining == 0) {
				*pw = w->next;
				w->next = NULL;
				/* the owner answers the request and frees w */
				ob->ops->wait_done(ob->owner, w);
			}
			break;
		}
	}
	mark_dirty(p, ob);
}

void outbox_record_failure(kd_producers *p, kd_outbox *ob, int ack, uint64_t seq, int32_t partition,
			   rd_kafka_resp_err_t err)
{
	p->counters.enqueue_failed++;
	apply_outcome(p, ob, ack, seq, partition, -1, err);
}

static void tally_undelivered(kd_producers *p, const char *topic)
{
	undelivered *u;
	HASH_FIND_STR(p->tally, topic, u);
	if (!u) {
		u = calloc(1, sizeof(*u));
		if (!u || !(u->topic = strdup(topic))) {
			free(u);
			return;
		}
		HASH_ADD_KEYPTR(hh, p->tally, u->topic, strlen(u->topic), u);
	}
	u->count++;
}

static void handle_dr_event(kd_producers *p, rd_kafka_event_t *ev)
{
	const rd_kafka_message_t *m;
	/* Failures of closed connections are summarised once per event. */
	uint64_t orphan_fail = 0;
	rd_kafka_resp_err_t orphan_err = 0;
	const char *orphan_topic = NULL;
	while ((m = rd_kafka_event_message_next(ev)) != NULL) {
		int ack, part;
		uint32_t slot;
		uint64_t seq;
		unpack_opaque(m->_private, &ack, &part, &slot, &seq);
		if (m->err) {
			p->counters.delivery_failed++;
			topic_meta_stale(rd_kafka_topic_opaque(m->rkt));
			if (p->shutting_down)
				tally_undelivered(p, rd_kafka_topic_name(m->rkt));
		} else {
			p->counters.delivered++;
		}
		kd_outbox *ob = slot < p->n_slots ? p->slots[slot] : NULL;
		if (ob == NULL) {
			log_error("delivery report for unknown outbox slot %u (bug)", slot);
			continue;
		}
		ob->inflight--;
		if (ack == KD_ACK_REPORT)
			ob->inflight_reported--;
		if (ob->owner == NULL) {
			if (m->err) {
				p->counters.orphan_failed++;
				orphan_fail++;
				orphan_err = m->err;
				orphan_topic = rd_kafka_topic_name(m->rkt);
			} else {
				p->counters.orphan_delivered++;
			}
			if (ob->inflight == 0)
				outbox_free(p, ob);
			continue;
		}
		apply_outcome(p, ob, ack, seq, m->partition, m->offset, m->err);
	}
	if (orphan_fail)
		log_warn("%llu messages of closed connections could not be delivered (last: topic %s: %s)",
			 (unsigned long long)orphan_fail, orphan_topic, rd_kafka_err2str(orphan_err));
}

void producers_notify(kd_producers *p)
{
	/* changed() may enqueue more messages and touch these lists again, so
	 * detach them first. */
	kd_outbox *blocked = p->blocked;
	p->blocked = NULL;
	for (kd_outbox *ob = blocked; ob; ob = ob->next_blocked) {
		ob->blocked = false;
		mark_dirty(p, ob);
	}
	while (p->dirty) {
		kd_outbox *ob = p->dirty;
		p->dirty = ob->next_dirty;
		ob->dirty = false;
		if (ob->owner)
			ob->ops->changed(ob->owner);
	}
}

/* --- event serving ------------------------------------------------------- */

static void serve_event(kd_cluster *c, rd_kafka_event_t *ev)
{
	switch (rd_kafka_event_type(ev)) {
	case RD_KAFKA_EVENT_DR:
		handle_dr_event(c->owner, ev);
		break;
	case RD_KAFKA_EVENT_STATS: {
		const char *json = rd_kafka_event_stats(ev);
		char *copy = json ? strdup(json) : NULL;
		if (copy) {
			free(c->stats_json);
			c->stats_json = copy;
		}
		break;
	}
	case RD_KAFKA_EVENT_ERROR:
		if (rd_kafka_event_error_is_fatal(ev))
			log_error("cluster %s: fatal: %s", c->conf->name, rd_kafka_event_error_string(ev));
		else
			log_warn("cluster %s: %s", c->conf->name, rd_kafka_event_error_string(ev));
		break;
	default:
		break;
	}
}

/* Serves at most budget events; returns true when the queue may hold more. */
static bool serve_cluster(kd_cluster *c, int budget)
{
	while (budget-- > 0) {
		rd_kafka_event_t *ev = rd_kafka_queue_poll(c->mainq, 0);
		if (ev == NULL)
			return false;
		serve_event(c, ev);
		rd_kafka_event_destroy(ev);
	}
	return rd_kafka_queue_length(c->mainq) > 0;
}

static void drain_pipe(kd_cluster *c)
{
	char buf[256];
	while (read(c->pipefd[0], buf, sizeof(buf)) > 0)
		;
}

static void on_idle(uv_idle_t *h)
{
	kd_cluster *c = h->data;
	bool more = serve_cluster(c, EVENTS_PER_WAKEUP);
	producers_notify(c->owner);
	if (!more)
		uv_idle_stop(&c->idle);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
	(void)events;
	kd_cluster *c = h->data;
	if (status < 0) {
		log_error("cluster %s: event pipe: %s", c->conf->name, uv_strerror(status));
		return;
	}
	drain_pipe(c);
	bool more = serve_cluster(c, EVENTS_PER_WAKEUP);
	producers_notify(c->owner);
	if (more)
		uv_idle_start(&c->idle, on_idle);
}

void producers_drain(kd_producers *p)
{
	for (size_t i = 0; i < p->n_clusters; i++) {
		drain_pipe(&p->clusters[i]);
		while (serve_cluster(&p->clusters[i], 1 << 20))
			;
	}
	producers_notify(p);
}

/* --- send now ------------------------------------------------------------ */

/* rd_kafka_flush() makes the broker threads treat linger.ms as 0 only while
 * it runs ("for the duration of the call"), and it wakes them at its start.
 * Called with timeout 0 from the loop it would be over before a broker
 * thread looks at the flag, so a helper thread calls it with a short
 * timeout. With DR events enabled (rd_kafka_conf_set_events) it does not
 * serve any queue: it only waits for librdkafka's message count to reach
 * 0 or for the timeout, so the loop keeps receiving every delivery event. */
static void flusher_main(void *arg)
{
	kd_cluster *c = arg;
	uv_mutex_lock(&c->fl_mu);
	for (;;) {
		while (!c->fl_requested && !c->fl_stop)
			uv_cond_wait(&c->fl_cv, &c->fl_mu);
		if (c->fl_stop)
			break;
		c->fl_requested = false; /* requests from now on get a flush of their own */
		uv_mutex_unlock(&c->fl_mu);
		rd_kafka_flush(c->rk, c->fl_window_ms);
		uv_mutex_lock(&c->fl_mu);
	}
	uv_mutex_unlock(&c->fl_mu);
}

void cluster_send_now(kd_cluster *c)
{
	if (c->linger_ms <= 0 || c->fl_failed)
		return;
	if (!c->fl_started) {
		if (uv_mutex_init(&c->fl_mu) != 0) {
			c->fl_failed = true;
		} else if (uv_cond_init(&c->fl_cv) != 0) {
			uv_mutex_destroy(&c->fl_mu);
			c->fl_failed = true;
		} else if (uv_thread_create(&c->fl_thread, flusher_main, c) != 0) {
			uv_cond_destroy(&c->fl_cv);
			uv_mutex_destroy(&c->fl_mu);
			c->fl_failed = true;
		}
		if (c->fl_failed) {
			log_warn("cluster %s: cannot start the send-now thread; waiting requests wait out linger.ms",
				 c->conf->name);
			return;
		}
		c->fl_started = true;
	}
	uv_mutex_lock(&c->fl_mu);
	c->fl_requested = true;
	uv_cond_signal(&c->fl_cv);
	uv_mutex_unlock(&c->fl_mu);
}

/* Ends the helper thread (a flush in progress ends within its window). */
static void flusher_stop(kd_cluster *c)
{
	if (!c->fl_started)
		return;
	uv_mutex_lock(&c->fl_mu);
	c->fl_stop = true;
	uv_cond_signal(&c->fl_cv);
	uv_mutex_unlock(&c->fl_mu);
	uv_thread_join(&c->fl_thread);
	uv_cond_destroy(&c->fl_cv);
	uv_mutex_destroy(&c->fl_mu);
	c->fl_started = false;
}

/* --- setup --------------------------------------------------------------- */

static int set_prop(rd_kafka_conf_t *conf, const char *key, const char *value, const char *cluster, char *err,
		    size_t errlen)
{
	char errstr[512];
	if (rd_kafka_conf_set(conf, key, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "cluster %s: %s: %s", cluster, key, errstr);
		return -1;
	}
	return 0;
}

static int cluster_init(kd_producers *p, kd_cluster *c, const kd_cluster_conf *cc, char *err, size_t errlen)
{
	c->owner = p;
	c->conf = cc;
	c->pipefd[0] = c->pipefd[1] = -1;
	c->default_partitioner = KD_PART_CONSISTENT_RANDOM;
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, log_rdkafka);
	/* kafkad's defaults; any of them can be overridden in the cluster section. */
	static const char *const defaults[][2] = {
		{"client.id", "kafkad"},
		{"queue.buffering.max.messages", "1000000"},
		{"queue.buffering.max.kbytes", "1048576"},
		{"linger.ms", "5"},
		/* librdkafka before 2.10 leaves Nagle on: a small request (a
		 * waiting caller's one message) can sit behind an unacknowledged
		 * segment; later versions default to true as well */
		{"socket.nagle.disable", "true"},
		{"statistics.interval.ms", "10000"},
		{"topic.metadata.propagation.max.ms", "5000"},
	};
	for (size_t i = 0; i < sizeof(defaults) / sizeof(defaults[0]); i++)
		if (set_prop(conf, defaults[i][0], defaults[i][1], cc->name, err, errlen))
			goto fail_conf;
	/* A missing topic must fail as UNKNOWN_TOPIC_OR_PART, not time out: wait
	 * for it to appear at most half the message timeout. */
	for (const kd_prop *pr = cc->props; pr; pr = pr->next) {
		long t = strcmp(pr->key, "message.timeout.ms") == 0 || strcmp(pr->key, "delivery.timeout.ms") == 0
				 ? strtol(pr->value, NULL, 10)
				 : 0;
		if (t > 0 && t / 2 < 5000) {
			char v[32];
			snprintf(v, sizeof(v), "%ld", t / 2 > 0 ? t / 2 : 1);
			if (set_prop(conf, "topic.metadata.propagation.max.ms", v, cc->name, err, errlen))
				goto fail_conf;
		}
	}
	if (strcmp(cc->bootstrap, "mock") == 0) {
		if (set_prop(conf, "test.mock.num.brokers", "3", cc->name, err, errlen))
			goto fail_conf;
	} else if (set_prop(conf, "bootstrap.servers", cc->bootstrap, cc->name, err, errlen)) {
		goto fail_conf;
	}
	for (const kd_prop *pr = cc->props; pr; pr = pr->next) {
		if (strcmp(pr->key, "partitioner") == 0) {
			c->default_partitioner = partitioner_parse(pr->value);
			continue;
		}
		if (set_prop(conf, pr->key, pr->value, cc->name, err, errlen))
			goto fail_conf;
	}
	rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_STATS | RD_KAFKA_EVENT_ERROR);
	char errstr[512];
	c->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!c->rk) {
		snprintf(err, errlen, "cluster %s: cannot create producer: %s", cc->name, errstr);
		goto fail_conf;
	}
	conf = NULL; /* owned by rk now */
	char linger[64];
	size_t linger_len = sizeof(linger);
	if (rd_kafka_conf_get(rd_kafka_conf(c->rk), "linger.ms", linger, &linger_len) == RD_KAFKA_CONF_OK)
		c->linger_ms = strtod(linger, NULL);
	char sticky[64];
	size_t sticky_len = sizeof(sticky);
	c->sticky_ms = 10; /* librdkafka's default */
	if (rd_kafka_conf_get(rd_kafka_conf(c->rk), "sticky.partitioning.linger.ms", sticky, &sticky_len) ==
	    RD_KAFKA_CONF_OK)
		c->sticky_ms = atoi(sticky);
	c->rng = (uint64_t)uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)c;
	if (c->rng == 0)
		c->rng = 0x9e3779b97f4a7c15ull;
	c->fl_window_ms = c->linger_ms < SEND_NOW_WINDOW_MAX_MS ? (int)c->linger_ms + 1 : SEND_NOW_WINDOW_MAX_MS;
	if (pipe2(c->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
		snprintf(err, errlen, "cluster %s: pipe: %s", cc->name, strerror(errno));
		return -1;
	}
	c->mainq = rd_kafka_queue_get_main(c->rk);
	rd_kafka_queue_io_event_enable(c->mainq, c->pipefd[1], "1", 1);
	int r = uv_poll_init(p->loop, &c->poll, c->pipefd[0]);
	if (r == 0)
		r = uv_idle_init(p->loop, &c->idle);
	if (r != 0) {
		snprintf(err, errlen, "cluster %s: event watcher: %s", cc->name, uv_strerror(r));
		return -1;
	}
	c->handles_open = true;
	c->poll.data = c;
	c->idle.data = c;
	uv_poll_start(&c->poll, UV_READABLE, on_poll);
	/* librdkafka signals the pipe only when the queue becomes non-empty:
	 * events queued before it was enabled would never wake us. */
	if (rd_kafka_queue_length(c->mainq) > 0)
		uv_idle_start(&c->idle, on_idle);
	return 0;
fail_conf:
	if (conf)
		rd_kafka_conf_destroy(conf);
	return -1;
}

kd_producers *producers_create(uv_loop_t *loop, const kd_config *cfg, char *err, size_t errlen)
{
	kd_producers *p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->loop = loop;
	p->cfg = cfg;
	for (const kd_cluster_conf *cc = cfg->clusters; cc; cc = cc->next)
		p->n_clusters++;
	p->clusters = calloc(p->n_clusters, sizeof(*p->clusters));
	if (!p->clusters) {
		free(p);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	size_t i = 0;
	for (const kd_cluster_conf *cc = cfg->clusters; cc; cc = cc->next, i++) {
		if (cluster_init(p, &p->clusters[i], cc, err, errlen) != 0) {
			p->n_clusters = i + 1;
			producers_close_handles(p);
			producers_destroy(p); /* handles not yet started on a loop run: safe */
			return NULL;
		}
	}
	return p;
}

size_t producers_count(kd_producers *p) { return p->n_clusters; }
kd_cluster *producers_cluster_at(kd_producers *p, size_t i) { return i < p->n_clusters ? &p->clusters[i] : NULL; }
const kd_producer_counters *producers_counters(kd_producers *p) { return &p->counters; }

kd_cluster *producers_cluster(kd_producers *p, const char *name, uint32_t len)
{
	if (len == 0) {
		name = p->cfg->default_cluster;
		len = (uint32_t)strlen(name);
	}
	for (size_t i = 0; i < p->n_clusters; i++)
		if (strlen(p->clusters[i].conf->name) == len && memcmp(p->clusters[i].conf->name, name, len) == 0)
			return &p->clusters[i];
	return NULL;
}

int producers_outq_len(kd_producers *p)
{
	int n = 0;
	for (size_t i = 0; i < p->n_clusters; i++)
		if (p->clusters[i].rk)
			n += rd_kafka_outq_len(p->clusters[i].rk);
	return n;
}

void producers_purge(kd_producers *p)
{
	for (size_t i = 0; i < p->n_clusters; i++)
		if (p->clusters[i].rk)
			rd_kafka_purge(p->clusters[i].rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
}

void producers_begin_shutdown(kd_producers *p) { p->shutting_down = true; }

uint64_t producers_log_undelivered(kd_producers *p)
{
	uint64_t total = 0;
	undelivered *u, *tmp;
	HASH_ITER(hh, p->tally, u, tmp) {
		log_error("shutdown: %llu messages to topic %s could not be delivered", (unsigned long long)u->count,
			  u->topic);
		total += u->count;
	}
	return total;
}

const char *cluster_name(const kd_cluster *c) { return c->conf->name; }
const kd_cluster_conf *cluster_conf(const kd_cluster *c) { return c->conf; }
const char *cluster_bootstrap(const kd_cluster *c) { return c->conf->bootstrap; }
rd_kafka_t *cluster_rk(kd_cluster *c) { return c->rk; }
const char *cluster_stats_json(const kd_cluster *c) { return c->stats_json; }

static bool valid_topic(const char *s, uint32_t len)
{
	if (len == 0 || len > 249)
		return false;
	for (uint32_t i = 0; i < len; i++) {
		char ch = s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '_' || ch == '-'))
			return false;
	}
	return !(len == 1 && s[0] == '.') && !(len == 2 && s[0] == '.' && s[1] == '.');
}

kd_topic *cluster_topic(kd_cluster *c, const char *name, uint32_t len)
{
	if (!valid_topic(name, len))
		return NULL;
	kd_topic *t;
	HASH_FIND(hh, c->topics, name, len, t);
	if (t)
		return t;
	t = calloc(1, sizeof(*t));
	if (!t || !(t->name = codec_strdup(name, len))) {
		free(t);
		return NULL;
	}
	t->default_partitioner = c->default_partitioner;
	t->rk = c->rk;
	t->cluster = c;
	rd_kafka_topic_conf_t *tc = rd_kafka_default_topic_conf_dup(c->rk);
	if (!tc)
		tc = rd_kafka_topic_conf_new();
	const kd_topic_conf *tconf = config_topic(c->conf, t->name);
	char errstr[512];
	for (const kd_prop *pr = tconf ? tconf->props : NULL; pr; pr = pr->next) {
		if (strcmp(pr->key, "partitioner") == 0) {
			t->default_partitioner = partitioner_parse(pr->value);
			continue;
		}
		/* validated at config load; a failure here is only logged */
		if (rd_kafka_topic_conf_set(tc, pr->key, pr->value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
			log_warn("topic %s: %s: %s", t->name, pr->key, errstr);
	}
	rd_kafka_topic_conf_set_partitioner_cb(tc, partitioner_cb);
	rd_kafka_topic_conf_set_opaque(tc, t);
	t->rkt = rd_kafka_topic_new(c->rk, t->name, tc);
	if (!t->rkt) {
		log_error("topic %s: %s", t->name, rd_kafka_err2str(rd_kafka_last_error()));
		free(t->name);
		free(t);
		return NULL;
	}
	HASH_ADD_KEYPTR(hh, c->topics, t->name, len, t);
	topic_meta_refresh(t, uv_now(c->owner->loop)); /* ready for the first unkeyed run */
	return t;
}

int32_t topic_partition_count(const kd_topic *t) { return t->part_cnt; }

rd_kafka_resp_err_t producer_send(kd_producers *p, kd_topic *t, kd_outbox *ob, int ack, int partitioner,
				  uint64_t seq, const kd_message *m)
{
	(void)p;
	rd_kafka_resp_err_t err = rd_kafka_producev(
		t->rk, RD_KAFKA_V_RKT(t->rkt), RD_KAFKA_V_PARTITION(m->partition),
		RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_VALUE((void *)m->value, m->value_len),
		RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_TIMESTAMP(m->timestamp),
		RD_KAFKA_V_HEADERS(m->headers), RD_KAFKA_V_OPAQUE(pack_opaque(ack, partitioner, ob->slot, seq)),
		RD_KAFKA_V_END);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		ob->inflight++;
		if (ack == KD_ACK_REPORT)
			ob->inflight_reported++;
		p->counters.produced++;
	}
	return err;
}

/* --- partitions for unkeyed runs ------------------------------------------ */

typedef struct meta_job {
	uv_work_t work;
	kd_topic *t; /* outlives the job: topics are freed after the loop ends */
	rd_kafka_resp_err_t err;
	int32_t cnt;
	uint8_t *leader_ok; /* owned until topic_meta_done takes it */
} meta_job;

/* Thread pool: reads only t's immutable rk and rkt. */
static void topic_meta_run(uv_work_t *w)
{
	meta_job *j = w->data;
	const rd_kafka_metadata_t *md = NULL;
	j->err = rd_kafka_metadata(j->t->rk, 0, j->t->rkt, &md, META_TIMEOUT_MS);
	if (j->err)
		return;
	const rd_kafka_metadata_topic_t *mt = md->topic_cnt == 1 ? &md->topics[0] : NULL;
	if (!mt || mt->err || mt->partition_cnt <= 0) {
		j->err = mt && mt->err ? mt->err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
	} else if (!(j->leader_ok = calloc((size_t)mt->partition_cnt, 1))) {
		j->err = RD_KAFKA_RESP_ERR__FAIL;
	} else {
		j->cnt = mt->partition_cnt;
		for (int i = 0; i < mt->partition_cnt; i++) {
			const rd_kafka_metadata_partition_t *pm = &mt->partitions[i];
			if (pm->id >= 0 && pm->id < j->cnt)
				j->leader_ok[pm->id] =
					pm->leader >= 0 && pm->err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
		}
	}
	rd_kafka_metadata_destroy(md);
}

static void topic_meta_done(uv_work_t *w, int status)
{
	meta_job *j = w->data;
	kd_topic *t = j->t;
	uint64_t now = uv_now(t->cluster->owner->loop);
	t->cluster->meta_busy = false;
	if (status == 0 && j->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		free(t->leader_ok);
		t->leader_ok = j->leader_ok;
		t->part_cnt = j->cnt;
		j->leader_ok = NULL;
		if (t->sticky >= t->part_cnt || !t->leader_ok[t->sticky])
			t->sticky_until = 0;
		t->meta_due = now + META_REFRESH_MS;
	} else {
		/* keep the last snapshot: librdkafka copes with a stale choice */
		t->meta_due = now + META_RETRY_MS;
	}
	free(j->leader_ok);
	free(j);
}

static void topic_meta_refresh(kd_topic *t, uint64_t now)
{
	if (t->cluster->meta_busy || now < t->meta_due || now < t->meta_started + META_RETRY_MS ||
	    t->cluster->owner->shutting_down)
		return;
	meta_job *j = calloc(1, sizeof(*j));
	if (!j)
		return;
	j->t = t;
	j->work.data = j;
	if (uv_queue_work(t->cluster->owner->loop, &j->work, topic_meta_run, topic_meta_done) != 0) {
		free(j);
		return;
	}
	t->cluster->meta_busy = true;
	t->meta_started = now;
}

static uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* The partition for the next unkeyed run, or RD_KAFKA_PARTITION_UA to let
 * librdkafka's partitioner decide (no snapshot yet, sticky partitioning
 * off, or no partition with a leader). */
static int32_t topic_sticky_partition(kd_topic *t)
{
	kd_cluster *c = t->cluster;
	if (c->sticky_ms <= 0)
		return RD_KAFKA_PARTITION_UA;
	uint64_t now = uv_now(c->owner->loop);
	topic_meta_refresh(t, now);
	if (t->part_cnt <= 0)
		return RD_KAFKA_PARTITION_UA;
	if (now < t->sticky_until)
		return t->sticky;
	int32_t start = (int32_t)(xorshift64(&c->rng) % (uint64_t)t->part_cnt);
	for (int32_t k = 0; k < t->part_cnt; k++) {
		int32_t cand = (start + k) % t->part_cnt;
		if (t->leader_ok[cand]) {
			t->sticky = cand;
			t->sticky_until = now + (uint64_t)c->sticky_ms;
			return cand;
		}
	}
	return RD_KAFKA_PARTITION_UA;
}

uint32_t producer_send_values(kd_producers *p, kd_topic *t, kd_outbox *ob, int ack, int partitioner,
			      uint64_t first_seq, const kd_value *vals, uint32_t n, bool *full)
{
	rd_kafka_message_t msgs[KD_SEND_VALUES_MAX];
	*full = false;
	if (n > KD_SEND_VALUES_MAX)
		n = KD_SEND_VALUES_MAX;
	/* Unkeyed messages: librdkafka's partitioner would not call
	 * partitioner_cb for them (it goes sticky for a NULL key whatever the
	 * partitioner), so choosing here changes no outcome. */
	int32_t partition = topic_sticky_partition(t);
	for (uint32_t i = 0; i < n; i++) {
		uint64_t seq = ack == KD_ACK_NONE ? 0 : first_seq + i;
		/* the fields librdkafka reads; err and offset are outputs */
		msgs[i] = (rd_kafka_message_t){
			.partition = partition,
			.payload = (void *)vals[i].ptr,
			.len = vals[i].len,
			._private = pack_opaque(ack, partitioner, ob->slot, seq),
		};
	}
	int good = rd_kafka_produce_batch(t->rkt, partition, RD_KAFKA_MSG_F_COPY, msgs, (int)n);
	if (good == 0 && n > 0 && partition != RD_KAFKA_PARTITION_UA &&
	    msgs[0].err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
		/* the snapshot knew more partitions than librdkafka does now */
		topic_meta_stale(t);
		t->sticky_until = 0;
		for (uint32_t i = 0; i < n; i++)
			msgs[i].partition = RD_KAFKA_PARTITION_UA;
		good = rd_kafka_produce_batch(t->rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, msgs, (int)n);
	}
	ob->inflight += (uint64_t)good;
	if (ack == KD_ACK_REPORT)
		ob->inflight_reported += (uint64_t)good;
	p->counters.produced += (uint64_t)good;
	if ((uint32_t)good == n)
		return n;
	/* librdkafka (2.0 to at least 2.16) fails every message after the first
	 * _QUEUE_FULL the same way: the caller retries from there. Should a
	 * later one ever be enqueued anyway, retrying would duplicate it, so
	 * then each refused message gets _QUEUE_FULL as its outcome instead. */
	uint32_t first_full = n;
	bool later_enqueued = false;
	for (uint32_t i = 0; i < n; i++) {
		if (msgs[i].err == RD_KAFKA_RESP_ERR__QUEUE_FULL && first_full == n)
			first_full = i;
		else if (msgs[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && first_full < n)
			later_enqueued = true;
	}
	if (later_enqueued) {
		log_warn("rd_kafka_produce_batch enqueued messages after a full queue; failing the refused ones");
		first_full = n;
	}
	for (uint32_t i = 0; i < first_full; i++) {
		rd_kafka_resp_err_t err = msgs[i].err;
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
			outbox_record_failure(p, ob, ack, ack == KD_ACK_NONE ? 0 : first_seq + i, RD_KAFKA_PARTITION_UA,
					      err);
	}
	*full = first_full < n;
	return first_full;
}

static void on_handle_closed(uv_handle_t *h) { (void)h; }

void producers_close_handles(kd_producers *p)
{
	for (size_t i = 0; i < p->n_clusters; i++) {
		kd_cluster *c = &p->clusters[i];
		if (!c->handles_open)
			continue;
		c->handles_open = false;
		uv_close((uv_handle_t *)&c->poll, on_handle_closed);
		uv_close((uv_handle_t *)&c->idle, on_handle_closed);
	}
}

void producers_destroy(kd_producers *p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < p->n_clusters; i++) {
		kd_cluster *c = &p->clusters[i];
		kd_topic *t, *tmp;
		HASH_ITER(hh, c->topics, t, tmp) {
			HASH_DEL(c->topics, t);
			rd_kafka_topic_destroy(t->rkt);
			free(t->leader_ok);
			free(t->name);
			free(t);
		}
		flusher_stop(c); /* before rk goes: it calls rd_kafka_flush(rk) */
		if (c->mainq) {
			rd_kafka_queue_io_event_enable(c->mainq, -1, NULL, 0);
			rd_kafka_queue_destroy(c->mainq);
		}
		if (c->rk)
			rd_kafka_destroy(c->rk);
		for (int j = 0; j < 2; j++)
			if (c->pipefd[j] >= 0)
				close(c->pipefd[j]);
		free(c->stats_json);
	}
	for (uint32_t s = 0; s < p->n_slots; s++)
		if (p->slots[s]) {
			free_waiters(p->slots[s]->waiters);
			free(p->slots[s]->runs);
			free(p->slots[s]);
		}
	undelivered *u, *tmp;
	HASH_ITER(hh, p->tally, u, tmp) {
		HASH_DEL(p->tally, u);
		free(u->topic);
		free(u);
	}
	free(p->slots);
	free(p->free_list);
	free(p->clusters);
	free(p);
}
