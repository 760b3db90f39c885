#include "consumer.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uthash.h>

#include "codec.h"
#include "errors.h"
#include "log.h"
#include "zkmember.h"

#define OFFSET_UNKNOWN INT64_MIN
#define INTAKE_BATCH 512
#define INTAKE_BATCHES_PER_WAKEUP 16
/* Per-partition buffer bounds, far above one fetch and far apart: a pause
 * drops what librdkafka had fetched past the buffer, and its resume needs a
 * seek to wake the fetcher (set_paused), so they only bite when the
 * partition's reader is much slower than the broker. */
#define PART_BUF_MAX_MSGS 262144u
#define PART_BUF_MAX_BYTES (32u << 20)
/* What a buffered message takes beyond its payload (librdkafka's op and
 * message, our ring entry): for the consumer's memory budget
 * (consumer_buffer_bytes), which pauses a partition past its share. */
#define MSG_MEM_OVERHEAD 256u
#define MAX_EVENTS 65536u

enum kd_event_type { EV_ASSIGNED, EV_REVOKED, EV_EOF };

typedef struct kd_event {
	uint8_t type;
	uint32_t tidx;
	int32_t partition;
	int64_t offset;
} kd_event;

/* A buffered message and what it will cost in a consume result, worked out
 * once at intake (librdkafka 2.0 re-parses headers on every lookup). */
typedef struct kd_bufent {
	rd_kafka_message_t *m;
	uint32_t cost;
	bool has_headers;
} kd_bufent;

typedef struct kd_cpart {
	uint32_t tidx;
	int32_t partition;
	kd_attach *holder;
	kd_bufent *buf; /* ring of fetched, not yet handed out */
	uint32_t head, len, cap;
	size_t bytes;
	int64_t commit_pos; /* where the holder's uncommitted window starts */
	int64_t next_hand;  /* offset after the last message handed out */
	int64_t fetch_next; /* offset after the last message taken in (OFFSET_UNKNOWN after a seek) */
	int64_t eof_offset; /* end reached while messages were still buffered */
	bool eof_pending;   /* ... so the eof event waits until they are handed out */
	uint32_t seeking;   /* seeks in flight: what is fetched meanwhile is stale */
	bool paused;
	struct kd_cpart *next;
} kd_cpart;

struct kd_attach {
	uint64_t handle;
	kd_consumer *c;
	uint64_t conn_id;
	void *owner;
	kd_event *events;
	uint32_t n_events, cap_events;
	uint32_t rr; /* round-robin start over held partitions */
	uint64_t buffered; /* messages buffered in the partitions it holds (set_holder) */
	bool waiting;
	kd_attach *next;
	UT_hash_handle hh;
};

struct kd_consumer {
	kd_consumers *cs;
	char *key;
	char *bootstrap; /* resolved (the mock cluster's address for "mock") */
	kd_consumer_spec spec;
	rd_kafka_t *rk;
	rd_kafka_queue_t *q;
	int pipefd[2];
	uv_poll_t poll;
	uv_idle_t idle;
	uv_timer_t linger;
	uv_timer_t autocommit;
	uv_async_t zk_async; /* zookeeper mode: the member's wake-up */
	kd_zkmember *zk;     /* zookeeper mode; destroyed by close_work */
	int open_handles;
	bool work_done;
	uv_work_t close_work;
	rd_kafka_topic_t **rkts; /* per topic index, learnt from messages */
	kd_cpart *parts;
	uint32_t n_parts;
	size_t buf_mem; /* part_mem summed over parts: the budget's measure */
	kd_cpart *last_part;
	kd_attach *attaches;
	uint32_t n_attaches;
	bool closing;
	bool close_deferred; /* closing waits for seek jobs on the pool */
	uint32_t jobs;       /* seek and assign jobs queued or running (they use rk) */
	/* rebalance assign/unassign calls, run one at a time on the pool in
	 * the order librdkafka asked for them (assign_head is running) */
	struct assign_job *assign_head, *assign_tail;
	bool assigned_once;
	kd_consumer *next;
};

struct kd_consumers {
	uv_loop_t *loop;
	const kd_config *cfg;
	const kd_consumer_events *ev;
	void *opaque;
	kd_consumer *list;
	kd_attach *by_handle;
	uint64_t next_handle;
	uint64_t next_private;
	uint32_t active;
};

typedef struct commit_ctx {
	kd_consumers *cs;
	kd_consumer *c;
	uint64_t conn_id;
	uint64_t req_id;
} commit_ctx;

static void rebalance_leases(kd_consumer *c);
static void notify_ready(kd_consumer *c);

void consumer_spec_free(kd_consumer_spec *spec)
{
	if (!spec)
		return;
	free(spec->group);
	for (uint32_t i = 0; i < spec->n_topics; i++)
		free(spec->topics[i]);
	free(spec->topics);
	free(spec->partition_counts);
	free(spec->partitions);
	free(spec->offsets);
	free(spec->assignor);
	free(spec->zk_connect);
	memset(spec, 0, sizeof(*spec));
}

/* --- partitions and buffers ---------------------------------------------- */

static kd_cpart *find_part(kd_consumer *c, uint32_t tidx, int32_t partition)
{
	if (c->last_part && c->last_part->tidx == tidx && c->last_part->partition == partition)
		return c->last_part;
	for (kd_cpart *p = c->parts; p; p = p->next)
		if (p->tidx == tidx && p->partition == partition)
			return c->last_part = p;
	return NULL;
}

static int topic_index(const kd_consumer *c, const char *name)
{
	for (uint32_t i = 0; i < c->spec.n_topics; i++)
		if (strcmp(c->spec.topics[i], name) == 0)
			return (int)i;
	return -1;
}

static int msg_topic_index(kd_consumer *c, rd_kafka_topic_t *rkt)
{
	for (uint32_t i = 0; i < c->spec.n_topics; i++)
		if (c->rkts[i] == rkt)
			return (int)i;
	int i = topic_index(c, rd_kafka_topic_name(rkt));
	if (i >= 0)
		c->rkts[i] = rkt;
	return i;
}

/* The memory p's buffered messages take, estimated. */
static size_t part_mem(const kd_cpart *p) { return p->bytes + (size_t)p->len * MSG_MEM_OVERHEAD; }

static void buf_clear(kd_consumer *c, kd_cpart *p)
{
	c->buf_mem -= part_mem(p);
	p->fetch_next = OFFSET_UNKNOWN; /* the caller moves the fetch position */
	if (p->holder)
		p->holder->buffered -= p->len;
	while (p->len) {
		rd_kafka_message_destroy(p->buf[p->head].m);
		p->head = (p->head + 1) % p->cap;
		p->len--;
	}
	p->head = 0;
	p->bytes = 0;
	p->eof_pending = false;
}

/* What a message costs in a consume result: payload plus its framing. */
static uint32_t msg_cost(const rd_kafka_message_t *m, bool *has_headers)
{
	size_t cost = m->len + m->key_len + 40;
	rd_kafka_headers_t *hdrs = NULL;
	*has_headers = false;
	if (rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
		const char *name;
		const void *val;
		size_t size;
		for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &val, &size) == 0; i++) {
			cost += strlen(name) + size + 12;
			*has_headers = true;
		}
	}
	return cost > UINT32_MAX ? UINT32_MAX : (uint32_t)cost;
}

static bool buf_push(kd_consumer *c, kd_cpart *p, rd_kafka_message_t *m)
{
	if (p->len == p->cap) {
		uint32_t cap = p->cap ? p->cap * 2 : 64;
		kd_bufent *nb = malloc(cap * sizeof(*nb));
		if (!nb)
			return false;
		for (uint32_t i = 0; i < p->len; i++)
			nb[i] = p->buf[(p->head + i) % p->cap];
		free(p->buf);
		p->buf = nb;
		p->cap = cap;
		p->head = 0;
	}
	kd_bufent *e = &p->buf[(p->head + p->len) % p->cap];
	e->m = m;
	e->cost = msg_cost(m, &e->has_headers);
	p->len++;
	if (p->holder)
		p->holder->buffered++;
	p->eof_pending = false;
	p->bytes += e->cost;
	c->buf_mem += e->cost + MSG_MEM_OVERHEAD;
	return true;
}

/* A partition's share of the consumer's budget: past it, with the budget
 * spent, the partition pauses; it resumes below half of it. */
static size_t part_share(const kd_consumer *c)
{
	return c->cs->cfg->consumer_buffer_bytes / (c->n_parts ? c->n_parts : 1);
}

static bool over_budget(const kd_consumer *c, const kd_cpart *p)
{
	return p->len >= PART_BUF_MAX_MSGS || p->bytes >= PART_BUF_MAX_BYTES ||
	       (c->buf_mem > c->cs->cfg->consumer_buffer_bytes && part_mem(p) >= part_share(c));
}

static bool may_resume(const kd_consumer *c, const kd_cpart *p)
{
	return p->len < PART_BUF_MAX_MSGS / 8 && p->bytes < PART_BUF_MAX_BYTES / 8 && part_mem(p) < part_share(c) / 2;
}

/* Every change of a partition's holder goes through here, so each
 * attachment knows how many buffered messages it could be handed without
 * scanning the partitions (attach_has_output runs on every intake). */
static void set_holder(kd_cpart *p, kd_attach *a)
{
	if (p->holder)
		p->holder->buffered -= p->len;
	p->holder = a;
	if (a)
		a->buffered += p->len;
}

static void set_paused(kd_consumer *c, kd_cpart *p, bool pause)
{
	if (p->paused == pause || (!pause && p->seeking))
		return; /* a seeking partition stays paused until seek_done */
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, c->spec.topics[p->tidx], p->partition);
	rd_kafka_resp_err_t err = pause ? rd_kafka_pause_partitions(c->rk, l) : rd_kafka_resume_partitions(c->rk, l);
	if (!err && !pause && p->fetch_next >= 0) {
		/* librdkafka 2.0 applies a resume on its main thread and does not
		 * wake the broker thread, which fetches again only when it next
		 * wakes (up to a second: a reader that caught up waited that
		 * long each time). A seek to where fetching stopped does wake it
		 * ("seek done"); the pause already dropped what was fetched past
		 * that, so nothing is skipped or repeated. Asynchronous. */
		l->elems[0].offset = p->fetch_next;
		rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, l, 0);
		if (e)
			rd_kafka_error_destroy(e);
	}
	rd_kafka_topic_partition_list_destroy(l);
	if (err)
		log_warn("consumer %s: %s %s[%d]: %s", c->key, pause ? "pause" : "resume", c->spec.topics[p->tidx],
			 p->partition, rd_kafka_err2str(err));
	else
		p->paused = pause;
}

static void push_event(kd_attach *a, uint8_t type, uint32_t tidx, int32_t partition, int64_t offset)
{
	if (a->n_events == a->cap_events) {
		if (a->cap_events >= MAX_EVENTS) {
			log_warn("consumer handle %llu: event queue full; dropping an event",
				 (unsigned long long)a->handle);
			return;
		}
		uint32_t cap = a->cap_events ? a->cap_events * 2 : 16;
		kd_event *ne = realloc(a->events, cap * sizeof(*ne));
		if (!ne)
			return;
		a->events = ne;
		a->cap_events = cap;
	}
	a->events[a->n_events++] = (kd_event){.type = type, .tidx = tidx, .partition = partition, .offset = offset};
}

static void close_work(uv_work_t *w);
static void close_work_done(uv_work_t *w, int status);

/* c's partition for a list element, or NULL. */
static kd_cpart *elem_part(kd_consumer *c, const rd_kafka_topic_partition_t *e)
{
	int t = topic_index(c, e->topic);
	return t < 0 ? NULL : find_part(c, (uint32_t)t, e->partition);
}

/* A pool job of c's ended: the last one lets a deferred close go ahead. */
static void job_finished(kd_consumer *c)
{
	if (--c->jobs == 0 && c->close_deferred) {
		c->close_deferred = false;
		c->close_work.data = c;
		if (uv_queue_work(c->cs->loop, &c->close_work, close_work, close_work_done) != 0) {
			close_work(&c->close_work);
			close_work_done(&c->close_work, 0);
		}
	}
}

/* A seek runs on the thread pool and waits until librdkafka applied it:
 * an asynchronous seek leaves a window in which messages fetched before it
 * still look current and would be handed out after the new position was
 * promised. Until the seek is applied, the partition's intake is dropped. */
typedef struct seek_job {
	uv_work_t work;
	kd_consumer *c; /* kept alive: closing waits for c->jobs to drain */
	rd_kafka_topic_partition_list_t *list;
} seek_job;

static void seek_run(uv_work_t *w)
{
	seek_job *j = w->data;
	rd_kafka_error_t *e = rd_kafka_seek_partitions(j->c->rk, j->list, 10000);
	if (e) {
		log_warn("consumer %s: seek: %s", j->c->key, rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	}
}

static void seek_done(uv_work_t *w, int status)
{
	(void)status;
	seek_job *j = w->data;
	kd_consumer *c = j->c;
	for (int i = 0; !c->closing && i < j->list->cnt; i++) {
		kd_cpart *p = elem_part(c, &j->list->elems[i]);
		if (p && p->seeking) {
			p->seeking--;
			buf_clear(c, p); /* anything that slipped in before the seek applied */
			if (!p->seeking)
				set_paused(c, p, false); /* fetching resumes at the new position */
		}
	}
	rd_kafka_topic_partition_list_destroy(j->list);
	free(j);
	job_finished(c);
}

/* Seeks the listed partitions (offsets set), marking them seeking. Each is
 * paused first (the pause reaches librdkafka before the seek does) and stays
 * paused until seek_done: what librdkafka fetched from the new position
 * before the loop hears that the seek applied would otherwise be dropped as
 * stale, and never fetched again. */
static int seek_async(kd_consumer *c, const rd_kafka_topic_partition_list_t *l)
{
	seek_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -1;
	j->c = c;
	j->list = rd_kafka_topic_partition_list_copy(l);
	j->work.data = j;
	for (int i = 0; i < l->cnt; i++) {
		kd_cpart *p = elem_part(c, &l->elems[i]);
		if (p) {
			set_paused(c, p, true);
			p->seeking++;
		}
	}
	if (uv_queue_work(c->cs->loop, &j->work, seek_run, seek_done) != 0) {
		for (int i = 0; i < l->cnt; i++) {
			kd_cpart *p = elem_part(c, &l->elems[i]);
			if (p && p->seeking && !--p->seeking)
				set_paused(c, p, false);
		}
		rd_kafka_topic_partition_list_destroy(j->list);
		free(j);
		return -1;
	}
	c->jobs++;
	return 0;
}

/* Seeks p back to where its holder's uncommitted window began. */
static void rewind_part(kd_consumer *c, kd_cpart *p)
{
	int64_t to = p->commit_pos;
	buf_clear(c, p);
	p->next_hand = OFFSET_UNKNOWN;
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, c->spec.topics[p->tidx], p->partition)->offset = to;
	if (seek_async(c, l) != 0)
		log_warn("consumer %s: cannot rewind %s[%d] to %lld", c->key, c->spec.topics[p->tidx], p->partition,
			 (long long)to);
	else
		log_info("consumer %s: %s[%d] rewound to offset %lld (uncommitted messages are redelivered)", c->key,
			 c->spec.topics[p->tidx], p->partition, (long long)to);
	rd_kafka_topic_partition_list_destroy(l);
	set_paused(c, p, false);
}

static void release_part(kd_consumer *c, kd_cpart *p)
{
	kd_attach *a = p->holder;
	if (!a)
		return;
	push_event(a, EV_REVOKED, p->tidx, p->partition, -1);
	set_holder(p, NULL);
	if (p->next_hand != OFFSET_UNKNOWN && p->commit_pos != OFFSET_UNKNOWN && p->next_hand > p->commit_pos)
		rewind_part(c, p);
	p->next_hand = OFFSET_UNKNOWN;
}

static kd_cpart *add_part(kd_consumer *c, uint32_t tidx, int32_t partition)
{
	kd_cpart *p = find_part(c, tidx, partition);
	if (p)
		return p;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->tidx = tidx;
	p->partition = partition;
	p->commit_pos = OFFSET_UNKNOWN;
	p->next_hand = OFFSET_UNKNOWN;
	p->fetch_next = OFFSET_UNKNOWN;
	p->next = c->parts;
	c->parts = p;
	c->n_parts++;
	return p;
}

static void remove_part(kd_consumer *c, kd_cpart *p)
{
	if (p->holder) {
		push_event(p->holder, EV_REVOKED, p->tidx, p->partition, -1);
		set_holder(p, NULL);
	}
	buf_clear(c, p);
	for (kd_cpart **pp = &c->parts; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			c->n_parts--;
			break;
		}
	if (c->last_part == p)
		c->last_part = NULL;
	free(p->buf);
	free(p);
}

static uint32_t held_count(const kd_consumer *c, const kd_attach *a)
{
	uint32_t n = 0;
	for (kd_cpart *p = c->parts; p; p = p->next)
		n += p->holder == a;
	return n;
}

/* Spreads the partitions evenly over the attachments, moving as few as
 * possible; partitions with an uncommitted window are moved last. */
static void rebalance_leases(kd_consumer *c)
{
	if (c->closing)
		return;
	uint32_t n = c->n_attaches;
	if (n == 0)
		return;
	uint32_t total = 0;
	for (kd_cpart *p = c->parts; p; p = p->next)
		total++;
	uint32_t base = total / n, extra = total % n;
	/* quotas: the `extra` attachments holding the most get base + 1 */
	kd_attach **order = malloc(n * sizeof(*order));
	uint32_t *quota = malloc(n * sizeof(*quota));
	uint32_t *held = malloc(n * sizeof(*held));
	if (!order || !quota || !held) {
		free(order);
		free(quota);
		free(held);
		return;
	}
	uint32_t i = 0;
	for (kd_attach *a = c->attaches; a; a = a->next, i++) {
		order[i] = a;
		held[i] = held_count(c, a);
	}
	for (uint32_t x = 1; x < n; x++) /* insertion sort by held, descending */
		for (uint32_t y = x; y > 0 && held[y] > held[y - 1]; y--) {
			kd_attach *ta = order[y];
			order[y] = order[y - 1];
			order[y - 1] = ta;
			uint32_t th = held[y];
			held[y] = held[y - 1];
			held[y - 1] = th;
		}
	for (i = 0; i < n; i++)
		quota[i] = base + (i < extra ? 1 : 0);
	/* release the excess: clean partitions first, then the others */
	for (int pass = 0; pass < 2; pass++)
		for (i = 0; i < n; i++)
			for (kd_cpart *p = c->parts; p && held[i] > quota[i]; p = p->next) {
				if (p->holder != order[i])
					continue;
				bool dirty = p->next_hand != OFFSET_UNKNOWN && p->commit_pos != OFFSET_UNKNOWN &&
					     p->next_hand > p->commit_pos;
				if (pass == 0 && dirty)
					continue;
				release_part(c, p);
				held[i]--;
			}
	/* hand out the free partitions */
	for (kd_cpart *p = c->parts; p; p = p->next) {
		if (p->holder)
			continue;
		for (i = 0; i < n; i++)
			if (held[i] < quota[i]) {
				set_holder(p, order[i]);
				held[i]++;
				push_event(order[i], EV_ASSIGNED, p->tidx, p->partition, -1);
				break;
			}
	}
	free(order);
	free(quota);
	free(held);
	notify_ready(c);
}

/* Whether p's holder received messages beyond the last commit. */
static bool part_dirty(const kd_cpart *p)
{
	return p->next_hand != OFFSET_UNKNOWN && p->next_hand > p->commit_pos;
}

/* zookeeper mode: messages go out only while the member's ownership lease
 * holds (ZooKeeper confirmed the session recently). */
static bool may_hand_out(const kd_consumer *c) { return !c->zk || zkmember_lease_valid(c->zk); }

/* zookeeper mode: makes the partition table exactly `parts` (of
 * topics[0]); ch gets what librdkafka must be told (the member's balancer
 * thread tells it, see zkmember.h). */
static void zk_apply(kd_consumer *c, const int32_t *parts, uint32_t n, bool commit, kd_zk_changes *ch)
{
	rd_kafka_topic_partition_list_t *gone = rd_kafka_topic_partition_list_new(4);
	rd_kafka_topic_partition_list_t *add = rd_kafka_topic_partition_list_new((int)n + 1);
	rd_kafka_topic_partition_list_t *commits = NULL;
	const char *topic = c->spec.topics[0];
	for (kd_cpart *p = c->parts, *next; p; p = next) {
		next = p->next;
		bool keep = false;
		for (uint32_t i = 0; i < n && !keep; i++)
			keep = parts[i] == p->partition;
		if (keep)
			continue;
		if (commit && c->spec.auto_commit_interval_ms && part_dirty(p)) {
			if (!commits)
				commits = rd_kafka_topic_partition_list_new(4);
			rd_kafka_topic_partition_list_add(commits, topic, p->partition)->offset = p->next_hand;
		}
		rd_kafka_topic_partition_list_add(gone, topic, p->partition);
		remove_part(c, p);
	}
	for (uint32_t i = 0; i < n; i++) {
		if (find_part(c, 0, parts[i]))
			continue;
		int64_t off = c->spec.reset_offset_on_start && !c->assigned_once ? c->spec.auto_offset_reset
										 : RD_KAFKA_OFFSET_STORED;
		rd_kafka_topic_partition_list_add(add, topic, parts[i])->offset = off;
		add_part(c, 0, parts[i]);
	}
	if (add->cnt)
		c->assigned_once = true;
	if (gone->cnt || add->cnt)
		log_info("consumer %s: ZooKeeper ownership: +%d -%d, %u partitions", c->key, add->cnt, gone->cnt, n);
	*ch = (kd_zk_changes){.commit = commits, .unassign = gone, .assign = add};
	rebalance_leases(c);
}

static void on_zk_async(uv_async_t *h)
{
	kd_consumer *c = h->data;
	if (c->closing || !c->zk)
		return;
	int32_t *parts = NULL;
	uint32_t n = 0;
	uint64_t seq = 0;
	bool commit = false;
	if (zkmember_take(c->zk, &parts, &n, &seq, &commit)) {
		kd_zk_changes ch;
		zk_apply(c, parts, n, commit, &ch);
		free(parts);
		zkmember_ack(c->zk, seq, &ch);
	}
	notify_ready(c); /* also: the lease may have come back */
}

/* --- librdkafka callbacks (loop thread, or the closing worker) ------------ */

/* The assign/unassign call a rebalance asks for. librdkafka waits for it
 * (the group's join state machine stays in "wait assign call"), so it need
 * not happen inside the callback: on the loop it goes to the thread pool,
 * where its wait for librdkafka's main thread blocks nobody. Calls run one
 * at a time, in order. Closing waits for them (c->jobs). */
typedef struct assign_job {
	uv_work_t work;
	kd_consumer *c;
	rd_kafka_topic_partition_list_t *list; /* the rebalance's partitions */
	bool assign;                           /* else revoke */
	struct assign_job *next;
} assign_job;

/* Makes librdkafka's call for a rebalance (any thread). */
static void apply_rebalance(kd_consumer *c, rd_kafka_t *rk, bool assign, rd_kafka_topic_partition_list_t *parts)
{
	bool coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
	rd_kafka_error_t *e = NULL;
	rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
	if (coop)
		e = assign ? rd_kafka_incremental_assign(rk, parts) : rd_kafka_incremental_unassign(rk, parts);
	else
		err = rd_kafka_assign(rk, assign ? parts : NULL);
	if (e) {
		log_warn("consumer %s: rebalance: %s", c->key, rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	} else if (err) {
		log_warn("consumer %s: rebalance: %s", c->key, rd_kafka_err2str(err));
	}
}

static void assign_run(uv_work_t *w)
{
	assign_job *j = w->data;
	apply_rebalance(j->c, j->c->rk, j->assign, j->list);
}

static void assign_done(uv_work_t *w, int status);

static void assign_start(kd_consumer *c)
{
	assign_job *j = c->assign_head;
	if (uv_queue_work(c->cs->loop, &j->work, assign_run, assign_done) != 0) {
		assign_run(&j->work); /* cannot happen with a live loop; block rather than stall the group */
		assign_done(&j->work, 0);
	}
}

static void assign_done(uv_work_t *w, int status)
{
	(void)status;
	assign_job *j = w->data;
	kd_consumer *c = j->c;
	c->assign_head = j->next;
	if (!c->assign_head)
		c->assign_tail = NULL;
	rd_kafka_topic_partition_list_destroy(j->list);
	free(j);
	if (c->assign_head)
		assign_start(c);
	job_finished(c);
}

/* Queues the call (loop thread); if that fails, makes it here. */
static void queue_rebalance(kd_consumer *c, rd_kafka_t *rk, bool assign, rd_kafka_topic_partition_list_t *parts)
{
	assign_job *j = calloc(1, sizeof(*j));
	if (!j || !(j->list = rd_kafka_topic_partition_list_copy(parts))) {
		free(j);
		apply_rebalance(c, rk, assign, parts);
		return;
	}
	j->c = c;
	j->assign = assign;
	j->work.data = j;
	c->jobs++;
	if (c->assign_tail) {
		c->assign_tail->next = j;
		c->assign_tail = j;
		return;
	}
	c->assign_head = c->assign_tail = j;
	assign_start(c);
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	kd_consumer *c = opaque;
	bool assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
	if (c->closing) {
		/* the closing worker's rd_kafka_consumer_close: already on the pool,
		 * and nothing of c's table is left to update */
		apply_rebalance(c, rk, assign, parts);
		return;
	}
	if (assign) {
		for (int i = 0; i < parts->cnt; i++) {
			int t = topic_index(c, parts->elems[i].topic);
			if (t < 0)
				continue;
			if (c->spec.reset_offset_on_start && !c->assigned_once)
				parts->elems[i].offset = c->spec.auto_offset_reset;
			add_part(c, (uint32_t)t, parts->elems[i].partition);
		}
		c->assigned_once = true;
		log_info("consumer %s: assigned %d partitions", c->key, parts->cnt);
	} else {
		/* messages of these partitions still in the queue find no
		 * partition (intake_message drops them) */
		for (int i = 0; i < parts->cnt; i++) {
			kd_cpart *p = elem_part(c, &parts->elems[i]);
			if (p)
				remove_part(c, p);
		}
		log_info("consumer %s: revoked %d partitions", c->key, parts->cnt);
	}
	queue_rebalance(c, rk, assign, parts);
	rebalance_leases(c);
}

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	(void)rk;
	commit_ctx *ctx = opaque;
	kd_consumer *c = ctx->c;
	if (!c->closing) {
		for (int i = 0; offsets && i < offsets->cnt; i++) {
			const rd_kafka_topic_partition_t *tp = &offsets->elems[i];
			kd_cpart *p = elem_part(c, tp);
			if (p && !tp->err && tp->offset >= 0)
				p->commit_pos = tp->offset;
		}
		if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
			log_warn("consumer %s: commit failed: %s", c->key, rd_kafka_err2str(err));
		if (ctx->conn_id)
			ctx->cs->ev->commit_done(ctx->cs->opaque, ctx->conn_id, ctx->req_id,
						 err == RD_KAFKA_RESP_ERR__NO_OFFSET ? 0 : err, offsets);
	}
	free(ctx);
}

/* --- intake ------------------------------------------------------------- */

static void intake_message(kd_consumer *c, rd_kafka_message_t *m)
{
	if (m->err) {
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && m->rkt) {
			int t = msg_topic_index(c, m->rkt);
			kd_cpart *p = t < 0 ? NULL : find_part(c, (uint32_t)t, m->partition);
			if (p && p->seeking) {
				/* stale: from before a seek */
			} else if (p && p->holder && p->len == 0) {
				push_event(p->holder, EV_EOF, p->tidx, p->partition, m->offset);
			} else if (p && p->len > 0) {
				p->eof_pending = true;
				p->eof_offset = m->offset;
			}
		} else {
			log_warn("consumer %s: %s%s%s", c->key, m->rkt ? rd_kafka_topic_name(m->rkt) : "",
				 m->rkt ? ": " : "", rd_kafka_message_errstr(m));
		}
		rd_kafka_message_destroy(m);
		return;
	}
	int t = msg_topic_index(c, m->rkt);
	kd_cpart *p = t < 0 ? NULL : find_part(c, (uint32_t)t, m->partition);
	if (!p || p->seeking || !buf_push(c, p, m)) {
		rd_kafka_message_destroy(m);
		return;
	}
	p->fetch_next = m->offset + 1;
	if (p->commit_pos == OFFSET_UNKNOWN)
		p->commit_pos = m->offset;
	if (over_budget(c, p))
		set_paused(c, p, true);
}

static bool intake(kd_consumer *c)
{
	rd_kafka_message_t *msgs[INTAKE_BATCH];
	for (int b = 0; b < INTAKE_BATCHES_PER_WAKEUP && !c->closing; b++) {
		ssize_t n = rd_kafka_consume_batch_queue(c->q, 0, msgs, INTAKE_BATCH);
		if (n <= 0)
			return false;
		for (ssize_t i = 0; i < n; i++)
			intake_message(c, msgs[i]);
		if (n < INTAKE_BATCH)
			return rd_kafka_queue_length(c->q) > 0;
	}
	return !c->closing;
}

static void notify_ready(kd_consumer *c)
{
	/* ready() answers a parked consume; if the client has vanished, that
	 * write closes its session, which detaches (frees) its attachments, this
	 * one or others: so look again from the head after every call (each call
	 * clears one attachment's waiting flag, so this ends). */
	for (;;) {
		kd_attach *a = c->attaches;
		while (a && !(a->waiting && attach_has_output(a)))
			a = a->next;
		if (!a)
			return;
		a->waiting = false;
		c->cs->ev->ready(c->cs->opaque, a);
	}
}

static void on_consumer_idle(uv_idle_t *h)
{
	kd_consumer *c = h->data;
	bool more = intake(c);
	notify_ready(c);
	if (!more || c->closing)
		uv_idle_stop(&c->idle);
}

static void on_consumer_poll(uv_poll_t *h, int status, int events)
{
	(void)events;
	kd_consumer *c = h->data;
	if (status < 0 || c->closing)
		return;
	char buf[256];
	while (read(c->pipefd[0], buf, sizeof(buf)) > 0)
		;
	bool more = intake(c);
	notify_ready(c);
	if (more)
		uv_idle_start(&c->idle, on_consumer_idle);
}

/* --- lifecycle ---------------------------------------------------------- */

static void free_consumer(kd_consumer *c)
{
	while (c->parts) /* a prepared consumer that was never activated */
		remove_part(c, c->parts);
	for (int i = 0; i < 2; i++)
		if (c->pipefd[i] >= 0)
			close(c->pipefd[i]);
	consumer_spec_free(&c->spec);
	free(c->rkts);
	free(c->key);
	free(c->bootstrap);
	c->cs->active--;
	free(c);
}

static void on_consumer_handle_closed(uv_handle_t *h)
{
	kd_consumer *c = h->data;
	if (--c->open_handles == 0 && c->work_done)
		free_consumer(c);
}

static void close_work(uv_work_t *w)
{
	kd_consumer *c = w->data;
	if (c->zk) { /* commits what was handed out, then ends the ZooKeeper session */
		zkmember_destroy(c->zk);
		c->zk = NULL;
	}
	rd_kafka_resp_err_t err = rd_kafka_consumer_close(c->rk);
	if (err)
		log_warn("consumer %s: close: %s", c->key, rd_kafka_err2str(err));
	rd_kafka_queue_destroy(c->q);
	rd_kafka_destroy(c->rk);
}

static void close_work_done(uv_work_t *w, int status)
{
	(void)status;
	kd_consumer *c = w->data;
	log_info("consumer %s: closed", c->key ? c->key : "(never opened)");
	c->work_done = true;
	kd_consumers *cs = c->cs;
	if (c->open_handles == 0)
		free_consumer(c);
	if (cs->ev->closed)
		cs->ev->closed(cs->opaque);
}

static void close_consumer(kd_consumer *c)
{
	if (c->closing)
		return;
	c->closing = true;
	kd_consumers *cs = c->cs;
	for (kd_consumer **pp = &cs->list; *pp; pp = &(*pp)->next)
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	if (c->spec.mode == KD_MODE_ZOOKEEPER) {
		rd_kafka_topic_partition_list_t *final = NULL;
		for (kd_cpart *p = c->parts; p && c->spec.auto_commit_interval_ms; p = p->next)
			if (part_dirty(p)) {
				if (!final)
					final = rd_kafka_topic_partition_list_new(4);
				rd_kafka_topic_partition_list_add(final, c->spec.topics[p->tidx], p->partition)->offset =
				    p->next_hand;
			}
		if (c->zk)
			zkmember_detach(c->zk, final);
		else if (final)
			rd_kafka_topic_partition_list_destroy(final);
		uv_close((uv_handle_t *)&c->zk_async, on_consumer_handle_closed);
	}
	while (c->parts)
		remove_part(c, c->parts);
	uv_close((uv_handle_t *)&c->poll, on_consumer_handle_closed);
	uv_close((uv_handle_t *)&c->idle, on_consumer_handle_closed);
	uv_close((uv_handle_t *)&c->linger, on_consumer_handle_closed);
	uv_close((uv_handle_t *)&c->autocommit, on_consumer_handle_closed);
	rd_kafka_queue_io_event_enable(c->q, -1, NULL, 0);
	log_info("consumer %s: closing (leaving its group)", c->key);
	if (c->jobs > 0) {
		c->close_deferred = true; /* seek_done queues the close */
		return;
	}
	c->close_work.data = c;
	if (uv_queue_work(cs->loop, &c->close_work, close_work, close_work_done) != 0) {
		close_work(&c->close_work); /* cannot happen with a live loop; block rather than leak */
		close_work_done(&c->close_work, 0);
	}
}

static void on_linger(uv_timer_t *t)
{
	kd_consumer *c = t->data;
	if (c->n_attaches == 0 && !c->spec.declared)
		close_consumer(c);
}

static int commit_list(kd_consumer *c, rd_kafka_topic_partition_list_t *l, uint64_t conn_id, uint64_t req_id,
		       char *err, size_t errlen)
{
	commit_ctx *ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		snprintf(err, errlen, "out of memory");
		return KD_ERR_INTERNAL;
	}
	*ctx = (commit_ctx){.cs = c->cs, .c = c, .conn_id = conn_id, .req_id = req_id};
	rd_kafka_resp_err_t e = rd_kafka_commit_queue(c->rk, l, c->q, commit_cb, ctx);
	if (e) {
		free(ctx);
		snprintf(err, errlen, "commit: %s", rd_kafka_err2str(e));
		return KD_ERR_KAFKA_BASE + e;
	}
	return 0;
}

static void on_autocommit(uv_timer_t *t)
{
	kd_consumer *c = t->data;
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
	for (kd_cpart *p = c->parts; p; p = p->next)
		if (p->next_hand != OFFSET_UNKNOWN && (p->commit_pos == OFFSET_UNKNOWN || p->next_hand > p->commit_pos))
			rd_kafka_topic_partition_list_add(l, c->spec.topics[p->tidx], p->partition)->offset = p->next_hand;
	if (l->cnt > 0) {
		char err[256];
		if (commit_list(c, l, 0, 0, err, sizeof(err)) != 0)
			log_warn("consumer %s: auto-commit: %s", c->key, err);
	}
	rd_kafka_topic_partition_list_destroy(l);
}

static char *make_key(kd_consumers *cs, const kd_consumer_spec *s)
{
	static const char *modes[] = {"simple", "group", "zookeeper"};
	char buf[4096];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "%s/%s/%s/", cluster_name(s->cluster), modes[s->mode],
				    s->group ? s->group : "");
	for (uint32_t i = 0; i < s->n_topics && n < sizeof(buf); i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s", i ? "," : "", s->topics[i]);
	if (s->partitions)
		for (uint32_t i = 0; i < s->n_partitions && n < sizeof(buf); i++)
			n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%d", i ? "," : "/", s->partitions[i]);
	if (s->mode == KD_MODE_ZOOKEEPER && s->zk_connect && n < sizeof(buf))
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "@%s%s", s->zk_connect,
				      s->zk_py3_owners_path ? "" : "#py2");
	/* a simple consumer without a group has no shared identity */
	if (s->mode == KD_MODE_SIMPLE && !s->group && n < sizeof(buf))
		snprintf(buf + n, sizeof(buf) - n, "#%llu", (unsigned long long)++cs->next_private);
	return strdup(buf);
}

static int set_conf(rd_kafka_conf_t *conf, const char *k, const char *v, char *err, size_t errlen)
{
	char errstr[512];
	if (rd_kafka_conf_set(conf, k, v, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
		snprintf(err, errlen, "%s: %s", k, errstr);
		return -1;
	}
	return 0;
}

/* Everything about a new consumer that may block (rd_kafka_new, subscribe,
 * assign): runs on the thread pool for consumer_open, so it touches no loop
 * state (c is not linked anywhere yet; the rebalance callback only runs
 * from the loop's polling, after activation). spec moves into c. */
static kd_consumer *consumer_prepare(kd_consumers *cs, kd_consumer_spec *spec, char *err, size_t errlen)
{
	kd_consumer *c = calloc(1, sizeof(*c));
	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->cs = cs;
	c->pipefd[0] = c->pipefd[1] = -1;
	c->spec = *spec;
	memset(spec, 0, sizeof(*spec));
	c->rkts = calloc(c->spec.n_topics, sizeof(*c->rkts));
	kd_cluster *cl = c->spec.cluster;
	const kd_cluster_conf *cc = cluster_conf(cl);
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, log_rdkafka);
	char bootstrap[1024];
	if (strcmp(cc->bootstrap, "mock") == 0) {
		rd_kafka_mock_cluster_t *mc = rd_kafka_handle_mock_cluster(cluster_rk(cl));
		snprintf(bootstrap, sizeof(bootstrap), "%s", mc ? rd_kafka_mock_cluster_bootstraps(mc) : "");
	} else {
		snprintf(bootstrap, sizeof(bootstrap), "%s", cc->bootstrap);
	}
	c->bootstrap = strdup(bootstrap);
	if (set_conf(conf, "bootstrap.servers", bootstrap, err, errlen))
		goto fail;
	/* The cluster section's librdkafka properties apply to consumers too
	 * (librdkafka ignores producer-only ones with a notice); the settings
	 * below are the daemon's and win. */
	for (const kd_prop *pr = cc->props; pr; pr = pr->next)
		if (strcmp(pr->key, "partitioner") != 0 && set_conf(conf, pr->key, pr->value, err, errlen))
			goto fail;
	const char *reset = c->spec.auto_offset_reset == RD_KAFKA_OFFSET_BEGINNING ? "earliest" : "latest";
	if (set_conf(conf, "enable.auto.commit", "false", err, errlen) ||
	    set_conf(conf, "enable.auto.offset.store", "false", err, errlen) ||
	    set_conf(conf, "enable.partition.eof", "true", err, errlen) ||
	    set_conf(conf, "auto.offset.reset", reset, err, errlen) ||
	    /* librdkafka 2.0 stops fetching every partition of a consumer
	     * whose queue passed these marks until its broker thread next
	     * wakes (up to ~1 s); one fetch response holds ~50k small
	     * messages, so the defaults (100000 messages) stalled a fast
	     * reader about twice per million messages. The loop moves
	     * messages into the bounded per-partition buffers at once:
	     * these marks only catch bursts it has not taken in yet. */
	    set_conf(conf, "queued.min.messages", "1000000", err, errlen) ||
	    set_conf(conf, "queued.max.messages.kbytes", "65536", err, errlen) ||
	    set_conf(conf, "statistics.interval.ms", "0", err, errlen))
		goto fail;
	/* librdkafka routes assigned partitions through the group's queue, so a
	 * consumer without a group gets a private id; it never joins or commits
	 * (assign() does not join, and commits are refused above). */
	if (set_conf(conf, "group.id", c->spec.group ? c->spec.group : "kafkad-private", err, errlen))
		goto fail;
	if (c->spec.mode == KD_MODE_GROUP && c->spec.assignor &&
	    set_conf(conf, "partition.assignment.strategy", c->spec.assignor, err, errlen))
		goto fail;
	rd_kafka_conf_set_opaque(conf, c);
	if (c->spec.mode == KD_MODE_GROUP)
		rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
	char errstr[512];
	c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (!c->rk) {
		snprintf(err, errlen, "cannot create consumer: %s", errstr);
		goto fail;
	}
	conf = NULL;
	rd_kafka_poll_set_consumer(c->rk);
	c->q = rd_kafka_queue_get_consumer(c->rk);
	if (!c->q) {
		snprintf(err, errlen, "no consumer queue");
		goto fail;
	}
	rd_kafka_resp_err_t e = RD_KAFKA_RESP_ERR_NO_ERROR;
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new((int)c->spec.n_topics);
	if (c->spec.mode == KD_MODE_GROUP) {
		for (uint32_t i = 0; i < c->spec.n_topics; i++)
			rd_kafka_topic_partition_list_add(l, c->spec.topics[i], RD_KAFKA_PARTITION_UA);
		if ((e = rd_kafka_subscribe(c->rk, l)))
			snprintf(err, errlen, "subscribe: %s", rd_kafka_err2str(e));
	} else if (c->spec.mode == KD_MODE_SIMPLE) {
		int32_t n = c->spec.partitions ? (int32_t)c->spec.n_partitions : c->spec.partition_counts[0];
		for (int32_t i = 0; i < n; i++) {
			int32_t part = c->spec.partitions ? c->spec.partitions[i] : i;
			int64_t off = (c->spec.group && !c->spec.reset_offset_on_start) ? RD_KAFKA_OFFSET_STORED
											 : c->spec.auto_offset_reset;
			for (uint32_t j = 0; j < c->spec.n_offsets; j++)
				if (c->spec.offsets[j][0] == part)
					off = c->spec.offsets[j][1];
			rd_kafka_topic_partition_list_add(l, c->spec.topics[0], part)->offset = off;
			add_part(c, 0, part);
		}
		if ((e = rd_kafka_assign(c->rk, l)))
			snprintf(err, errlen, "assign: %s", rd_kafka_err2str(e));
	} /* zookeeper mode: the member assigns partitions as ZooKeeper grants them */
	rd_kafka_topic_partition_list_destroy(l);
	if (e)
		goto fail;
	return c;
fail:
	if (conf)
		rd_kafka_conf_destroy(conf);
	if (c->q)
		rd_kafka_queue_destroy(c->q);
	if (c->rk)
		rd_kafka_destroy(c->rk);
	while (c->parts)
		remove_part(c, c->parts);
	consumer_spec_free(&c->spec);
	free(c->rkts);
	free(c->bootstrap);
	free(c);
	return NULL;
}

/* Drops a prepared consumer that was never activated: librdkafka's close
 * and destroy run on the thread pool like any close. */
static void consumer_discard(kd_consumer *c)
{
	c->closing = true;
	c->work_done = false;
	c->cs->active++;
	c->close_work.data = c;
	if (uv_queue_work(c->cs->loop, &c->close_work, close_work, close_work_done) != 0) {
		close_work(&c->close_work);
		close_work_done(&c->close_work, 0);
	}
}

/* Loop thread: gives a prepared consumer its key, loop handles and (zookeeper
 * mode) its member, and lists it. Returns false (c dropped) on failure. */
static bool consumer_activate(kd_consumer *c, char *err, size_t errlen)
{
	kd_consumers *cs = c->cs;
	c->key = make_key(cs, &c->spec);
	if (!c->key || pipe2(c->pipefd, O_NONBLOCK | O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", c->key ? strerror(errno) : "out of memory");
		consumer_discard(c);
		return false;
	}
	cs->active++;
	uv_poll_init(cs->loop, &c->poll, c->pipefd[0]);
	uv_idle_init(cs->loop, &c->idle);
	uv_timer_init(cs->loop, &c->linger);
	uv_timer_init(cs->loop, &c->autocommit);
	c->poll.data = c->idle.data = c->linger.data = c->autocommit.data = c;
	c->open_handles = 4;
	rd_kafka_queue_io_event_enable(c->q, c->pipefd[1], "1", 1);
	uv_poll_start(&c->poll, UV_READABLE, on_consumer_poll);
	/* the pipe is signalled on empty → non-empty only: catch up once */
	uv_idle_start(&c->idle, on_consumer_idle);
	if (c->spec.mode == KD_MODE_ZOOKEEPER) {
		uv_async_init(cs->loop, &c->zk_async, on_zk_async);
		c->zk_async.data = c;
		c->open_handles++;
		kd_zk_params zp = {
		    .connect = c->spec.zk_connect,
		    .group = c->spec.group,
		    .topic = c->spec.topics[0],
		    .assignor = c->spec.assignor && strcmp(c->spec.assignor, "roundrobin") == 0 ? KD_ZK_ROUNDROBIN
												  : KD_ZK_RANGE,
		    .session_timeout_ms = c->spec.zk_session_timeout_ms,
		    .rebalance_backoff_ms = c->spec.rebalance_backoff_ms,
		    .py3_owners_path = c->spec.zk_py3_owners_path,
		};
		c->zk = zkmember_start(&zp, c->rk, &c->zk_async, err, errlen);
		if (!c->zk) {
			close_consumer(c);
			return false;
		}
	}
	if (c->spec.auto_commit_interval_ms && c->spec.group)
		uv_timer_start(&c->autocommit, on_autocommit, c->spec.auto_commit_interval_ms,
			       c->spec.auto_commit_interval_ms);
	c->next = cs->list;
	cs->list = c;
	log_info("consumer %s: created", c->key);
	return true;
}

/* Loop thread, blocking: for declared consumers at startup and the rare
 * open that finds no prepared consumer. */
static kd_consumer *consumer_new(kd_consumers *cs, kd_consumer_spec *spec, char *err, size_t errlen)
{
	kd_consumer *c = consumer_prepare(cs, spec, err, errlen);
	return c && consumer_activate(c, err, errlen) ? c : NULL;
}

kd_consumers *consumers_create(uv_loop_t *loop, const kd_config *cfg, const kd_consumer_events *ev, void *opaque)
{
	kd_consumers *cs = calloc(1, sizeof(*cs));
	if (!cs)
		return NULL;
	cs->loop = loop;
	cs->cfg = cfg;
	cs->ev = ev;
	cs->opaque = opaque;
	return cs;
}

void consumers_close_all(kd_consumers *cs)
{
	kd_attach *a, *tmp;
	HASH_ITER(hh, cs->by_handle, a, tmp) {
		consumers_detach(cs, a, true);
	}
	while (cs->list)
		close_consumer(cs->list);
}

uint32_t consumers_active(const kd_consumers *cs) { return cs->active; }

void consumers_destroy(kd_consumers *cs)
{
	free(cs);
}

int consumers_declare(kd_consumers *cs, kd_consumer_spec *spec, char *err, size_t errlen)
{
	spec->declared = true;
	kd_consumer *c = consumer_new(cs, spec, err, errlen);
	consumer_spec_free(spec);
	return c ? 0 : -1;
}

static kd_consumer *find_by_key(kd_consumers *cs, const kd_consumer_spec *spec)
{
	/* a private simple consumer has no shared identity: never found */
	if (spec->mode == KD_MODE_SIMPLE && !spec->group)
		return NULL;
	char *key = make_key(cs, spec);
	kd_consumer *c = NULL;
	for (kd_consumer *it = cs->list; it && key; it = it->next)
		if (strcmp(it->key, key) == 0)
			c = it;
	free(key);
	return c;
}

bool consumers_exists(kd_consumers *cs, const kd_consumer_spec *spec) { return find_by_key(cs, spec) != NULL; }

kd_consumer *consumers_prepare(kd_consumers *cs, kd_consumer_spec *spec, char *err, size_t errlen)
{
	return consumer_prepare(cs, spec, err, errlen);
}

void consumers_discard(kd_consumer *prepared)
{
	if (prepared)
		consumer_discard(prepared);
}

int consumers_attach(kd_consumers *cs, kd_consumer_spec *spec, kd_consumer *prepared, uint64_t conn_id, void *owner,
		     kd_attach **out, char *err, size_t errlen)
{
	kd_consumer *c = find_by_key(cs, prepared ? &prepared->spec : spec);
	if (c) /* joined meanwhile (or found at once) */
		consumers_discard(prepared);
	else if (prepared)
		c = consumer_activate(prepared, err, errlen) ? prepared : NULL;
	else
		c = consumer_new(cs, spec, err, errlen);
	consumer_spec_free(spec);
	if (!c)
		return KD_ERR_INVALID_ARGUMENT;
	kd_attach *a = calloc(1, sizeof(*a));
	if (!a) {
		if (c->n_attaches == 0 && !c->spec.declared)
			close_consumer(c); /* nobody would ever close it */
		snprintf(err, errlen, "out of memory");
		return KD_ERR_INTERNAL;
	}
	a->handle = ++cs->next_handle;
	a->c = c;
	a->conn_id = conn_id;
	a->owner = owner;
	kd_attach **tail = &c->attaches;
	while (*tail)
		tail = &(*tail)->next;
	*tail = a;
	c->n_attaches++;
	uv_timer_stop(&c->linger);
	HASH_ADD(hh, cs->by_handle, handle, sizeof(a->handle), a);
	rebalance_leases(c);
	*out = a;
	return 0;
}

void consumers_detach(kd_consumers *cs, kd_attach *a, bool leave_now)
{
	if (!a)
		return;
	kd_consumer *c = a->c;
	HASH_DEL(cs->by_handle, a);
	for (kd_cpart *p = c->parts; p; p = p->next)
		if (p->holder == a)
			release_part(c, p);
	for (kd_attach **pp = &c->attaches; *pp; pp = &(*pp)->next)
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	c->n_attaches--;
	free(a->events);
	free(a);
	if (c->closing)
		return;
	if (c->n_attaches > 0) {
		rebalance_leases(c);
	} else if (!c->spec.declared) {
		uint32_t linger = cs->cfg->consumer_linger_ms;
		if (linger == 0 || leave_now)
			close_consumer(c);
		else
			uv_timer_start(&c->linger, on_linger, linger, 0);
	}
}

void consumers_pack_stats(const kd_consumers *cs, msgpack_packer *pk)
{
	static const char *modes[] = {"simple", "group", "zookeeper"};
	uint32_t n = 0;
	for (const kd_consumer *c = cs->list; c; c = c->next)
		n++;
	msgpack_pack_array(pk, n);
	for (const kd_consumer *c = cs->list; c; c = c->next) {
		uint32_t buffered = 0;
		for (const kd_cpart *p = c->parts; p; p = p->next)
			buffered += p->len;
		msgpack_pack_map(pk, c->zk ? 9 : 7);
		pack_kv_str(pk, "consumer", c->key);
		pack_kv_str(pk, "mode", modes[c->spec.mode]);
		pack_kv_uint(pk, "attached", c->n_attaches);
		pack_kv_uint(pk, "partitions", c->n_parts);
		pack_kv_uint(pk, "buffered", buffered);
		pack_kv_uint(pk, "buffered_bytes", c->buf_mem);
		pack_cstr(pk, "declared");
		if (c->spec.declared)
			msgpack_pack_true(pk);
		else
			msgpack_pack_false(pk);
		if (c->zk) {
			pack_kv_str(pk, "member_id", zkmember_id(c->zk));
			pack_cstr(pk, "ownership_confirmed");
			if (zkmember_lease_valid(c->zk))
				msgpack_pack_true(pk);
			else
				msgpack_pack_false(pk);
		}
	}
}

kd_attach *consumers_find(kd_consumers *cs, uint64_t handle)
{
	kd_attach *a;
	HASH_FIND(hh, cs->by_handle, &handle, sizeof(handle), a);
	return a;
}

uint64_t attach_handle(const kd_attach *a) { return a->handle; }
uint64_t attach_conn(const kd_attach *a) { return a->conn_id; }
void *attach_owner(const kd_attach *a) { return a->owner; }
const char *attach_consumer_key(const kd_attach *a) { return a->c->key; }
uint32_t attach_count(const kd_attach *a) { return a->c->n_attaches; }
rd_kafka_t *attach_rk(kd_attach *a) { return a->c->rk; }
bool attach_has_group(const kd_attach *a) { return a->c->spec.group != NULL; }
const char *attach_group(const kd_attach *a) { return a->c->spec.group; }
const char *attach_bootstrap(const kd_attach *a) { return a->c->bootstrap; }
const char *attach_member_id(const kd_attach *a) { return a->c->zk ? zkmember_id(a->c->zk) : NULL; }

bool attach_has_output(const kd_attach *a)
{
	if (a->n_events)
		return true;
	return a->buffered > 0 && may_hand_out(a->c);
}

void attach_set_waiting(kd_attach *a, bool waiting) { a->waiting = waiting; }

static void pack_message(msgpack_packer *pk, const rd_kafka_message_t *m, uint32_t tidx, bool has_headers)
{
	msgpack_pack_array(pk, 7);
	msgpack_pack_uint32(pk, tidx);
	msgpack_pack_int32(pk, m->partition);
	msgpack_pack_int64(pk, m->offset);
	rd_kafka_timestamp_type_t tt;
	int64_t ts = rd_kafka_message_timestamp(m, &tt);
	msgpack_pack_int64(pk, tt == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE ? -1 : ts);
	if (m->key) {
		msgpack_pack_bin(pk, m->key_len);
		msgpack_pack_bin_body(pk, m->key, m->key_len);
	} else {
		msgpack_pack_nil(pk);
	}
	if (m->payload) {
		msgpack_pack_bin(pk, m->len);
		msgpack_pack_bin_body(pk, m->payload, m->len);
	} else {
		msgpack_pack_nil(pk);
	}
	rd_kafka_headers_t *hdrs = NULL;
	if (has_headers && rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR && hdrs) {
		size_t n = rd_kafka_header_cnt(hdrs);
		msgpack_pack_array(pk, n);
		for (size_t i = 0; i < n; i++) {
			const char *name;
			const void *val;
			size_t size;
			rd_kafka_header_get_all(hdrs, i, &name, &val, &size);
			msgpack_pack_array(pk, 2);
			pack_cstr(pk, name);
			if (val) {
				msgpack_pack_bin(pk, size);
				msgpack_pack_bin_body(pk, val, size);
			} else {
				msgpack_pack_nil(pk);
			}
		}
	} else {
		msgpack_pack_nil(pk);
	}
}

void attach_take(kd_attach *a, msgpack_packer *pk, uint32_t max, size_t max_bytes)
{
	kd_consumer *c = a->c;
	/* choose what to hand out first, so the array header can be exact */
	uint32_t nparts = 0;
	for (kd_cpart *p = c->parts; p; p = p->next)
		nparts += p->holder == a;
	kd_cpart **mine = nparts ? malloc(nparts * sizeof(*mine)) : NULL;
	uint32_t *take = nparts ? calloc(nparts, sizeof(*take)) : NULL;
	uint32_t k = 0, total = 0;
	if (!may_hand_out(c)) {
		nparts = 0; /* ownership unconfirmed: events only */
	} else if (mine && take) {
		for (kd_cpart *p = c->parts; p; p = p->next)
			if (p->holder == a)
				mine[k++] = p;
		size_t bytes = 0;
		/* round robin, one message at a time, so partitions share fairly */
		bool progress = true;
		while (progress && total < max && bytes < max_bytes) {
			progress = false;
			for (uint32_t j = 0; j < nparts && total < max && bytes < max_bytes; j++) {
				uint32_t idx = (a->rr + j) % nparts;
				kd_cpart *p = mine[idx];
				if (take[idx] >= p->len)
					continue;
				size_t cost = p->buf[(p->head + take[idx]) % p->cap].cost;
				if (bytes > 0 && bytes + cost > max_bytes) {
					bytes = max_bytes;
					break;
				}
				bytes += cost;
				take[idx]++;
				total++;
				progress = true;
			}
		}
		a->rr++;
		writer_reserve(pk, bytes + 256); /* one allocation for the whole result */
	} else {
		nparts = 0;
	}
	msgpack_pack_map(pk, 3);
	pack_cstr(pk, "topics");
	msgpack_pack_array(pk, c->spec.n_topics);
	for (uint32_t i = 0; i < c->spec.n_topics; i++)
		pack_cstr(pk, c->spec.topics[i]);
	pack_cstr(pk, "messages");
	msgpack_pack_array(pk, total);
	for (uint32_t j = 0; j < nparts; j++) {
		kd_cpart *p = mine[j];
		for (uint32_t i = 0; i < take[j]; i++) {
			const kd_bufent *e = &p->buf[p->head];
			rd_kafka_message_t *m = e->m;
			pack_message(pk, m, p->tidx, e->has_headers);
			p->next_hand = m->offset + 1;
			p->bytes -= e->cost;
			c->buf_mem -= e->cost + MSG_MEM_OVERHEAD;
			p->head = (p->head + 1) % p->cap;
			p->len--;
			a->buffered--; /* p->holder == a */
			rd_kafka_message_destroy(m);
		}
		if (p->paused && may_resume(c, p))
			set_paused(c, p, false);
		if (p->eof_pending && p->len == 0) {
			p->eof_pending = false;
			push_event(a, EV_EOF, p->tidx, p->partition, p->eof_offset);
		}
	}
	pack_cstr(pk, "events");
	msgpack_pack_array(pk, a->n_events);
	static const char *names[] = {"assigned", "revoked", "eof"};
	for (uint32_t i = 0; i < a->n_events; i++) {
		const kd_event *e = &a->events[i];
		bool off = e->type == EV_EOF;
		msgpack_pack_map(pk, off ? 4 : 3);
		pack_kv_str(pk, "type", names[e->type]);
		pack_kv_str(pk, "topic", c->spec.topics[e->tidx]);
		pack_kv_int(pk, "partition", e->partition);
		if (off)
			pack_kv_int(pk, "offset", e->offset);
	}
	a->n_events = 0;
	free(mine);
	free(take);
}

static int check_held(kd_attach *a, const rd_kafka_topic_partition_list_t *l, char *err, size_t errlen)
{
	for (int i = 0; i < l->cnt; i++) {
		int t = topic_index(a->c, l->elems[i].topic);
		kd_cpart *p = t < 0 ? NULL : find_part(a->c, (uint32_t)t, l->elems[i].partition);
		if (!p || p->holder != a) {
			snprintf(err, errlen, "%s[%d] is not leased to this connection", l->elems[i].topic,
				 l->elems[i].partition);
			return KD_ERR_NOT_ASSIGNED;
		}
	}
	return 0;
}

int attach_commit(kd_attach *a, const rd_kafka_topic_partition_list_t *offsets, uint64_t req_id, char *err,
		  size_t errlen)
{
	kd_consumer *c = a->c;
	if (!c->spec.group) {
		snprintf(err, errlen, "this consumer has no group: nothing to commit to");
		return KD_ERR_INVALID_STATE;
	}
	rd_kafka_topic_partition_list_t *l;
	if (offsets) {
		int rc = check_held(a, offsets, err, errlen);
		if (rc)
			return rc;
		l = rd_kafka_topic_partition_list_copy(offsets);
	} else {
		l = rd_kafka_topic_partition_list_new(8);
		for (kd_cpart *p = c->parts; p; p = p->next)
			if (p->holder == a && p->next_hand != OFFSET_UNKNOWN)
				rd_kafka_topic_partition_list_add(l, c->spec.topics[p->tidx], p->partition)->offset =
					p->next_hand;
	}
	if (l->cnt == 0) {
		rd_kafka_topic_partition_list_destroy(l);
		return -1; /* nothing to commit */
	}
	int rc = commit_list(c, l, a->conn_id, req_id, err, errlen);
	rd_kafka_topic_partition_list_destroy(l);
	return rc;
}

int attach_seek(kd_attach *a, const rd_kafka_topic_partition_list_t *offsets, char *err, size_t errlen)
{
	kd_consumer *c = a->c;
	int rc = check_held(a, offsets, err, errlen);
	if (rc)
		return rc;
	for (int i = 0; i < offsets->cnt; i++) {
		kd_cpart *p = elem_part(c, &offsets->elems[i]); /* check_held: held, so present */
		buf_clear(c, p);
		p->commit_pos = OFFSET_UNKNOWN;
		p->next_hand = OFFSET_UNKNOWN;
		set_paused(c, p, false);
	}
	if (seek_async(c, offsets) != 0) {
		snprintf(err, errlen, "seek: cannot queue it");
		return KD_ERR_INTERNAL;
	}
	return 0;
}

rd_kafka_topic_partition_list_t *attach_partitions(const kd_attach *a)
{
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(8);
	for (kd_cpart *p = a->c->parts; p; p = p->next)
		if (p->holder == a)
			rd_kafka_topic_partition_list_add(l, a->c->spec.topics[p->tidx], p->partition);
	return l;
}
