/* producer: one librdkafka producer per configured cluster, shared by every
 * connection, and the routing of delivery outcomes back to connections.
 *
 * Routing never uses pointers: each message's opaque packs
 *   bits 63..62 ack mode | 61..59 partitioner | 58..38 outbox slot | 37..0 seq
 * and the slot of an outbox is not reused before every message it sent has
 * an outcome (a closed connection's outbox lives on, "orphaned", until then).
 *
 * librdkafka events reach the loop through rd_kafka_queue_io_event_enable on
 * a pipe watched by uv_poll; each wakeup serves a bounded number of events
 * and an idle handle continues when more are waiting. */
#ifndef KAFKAD_PRODUCER_H
#define KAFKAD_PRODUCER_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

enum kd_ack { KD_ACK_NONE = 0, KD_ACK_REPORT = 1, KD_ACK_WAIT = 2 };

#define KD_SEQ_BITS 38
#define KD_SLOT_BITS 21
#define KD_MAX_SLOTS (1u << KD_SLOT_BITS)
#define KD_MAX_SEQ ((UINT64_C(1) << KD_SEQ_BITS) - 1)

/* A run of delivery outcomes: seq..seq+count-1 on partition at
 * offset..offset+count-1 (offset -1 when unknown) with the same error. */
typedef struct kd_run {
	uint64_t seq;
	int64_t offset;
	int32_t partition;
	int32_t err; /* rd_kafka_resp_err_t */
	uint32_t count;
} kd_run;

typedef struct kd_result {
	int64_t offset;
	int32_t partition;
	int32_t err;
} kd_result;

/* An ack=wait request: answered when `remaining` reaches 0. */
typedef struct kd_waiter {
	uint64_t req_id;
	uint64_t first_seq;
	uint32_t count;
	uint32_t remaining;
	struct kd_waiter *next;
	kd_result results[]; /* count entries */
} kd_waiter;

typedef struct kd_outbox kd_outbox;

/* What the connection layer registers on its outbox. */
typedef struct kd_outbox_ops {
	/* Reports arrived, in-flight count dropped, or producer room appeared. */
	void (*changed)(void *owner);
	/* A waiter completed; the callee takes ownership and must free() it. */
	void (*wait_done)(void *owner, kd_waiter *w);
} kd_outbox_ops;

struct kd_outbox {
	uint32_t slot;
	uint64_t conn_id;       /* for logs */
	uint64_t next_seq;      /* next report/wait sequence number, from 1 */
	uint64_t inflight;      /* enqueued, no outcome yet (all ack modes) */
	uint64_t inflight_reported; /* of which ack=report */
	uint64_t queued;        /* messages in runs not yet collected */
	kd_run *runs;           /* ring buffer of uncollected runs */
	uint32_t runs_head, runs_len, runs_cap;
	kd_waiter *waiters;     /* ack=wait requests in flight, oldest first */
	const kd_outbox_ops *ops;
	void *owner;            /* NULL once the connection is gone (orphan) */
	bool dirty;             /* queued for a changed() call */
	bool blocked;           /* waiting for producer room */
	kd_outbox *next_dirty;
	kd_outbox *next_blocked;
};

typedef struct kd_topic kd_topic;
typedef struct kd_cluster kd_cluster;
typedef struct kd_producers kd_producers;

typedef struct kd_producer_counters {
	uint64_t produced, delivered, delivery_failed, orphan_delivered, orphan_failed, enqueue_failed;
} kd_producer_counters;

/* Creates one producer per cluster of cfg (cfg must outlive the result).
 * Returns NULL with a message in err. */
kd_producers *producers_create(uv_loop_t *loop, const kd_config *cfg, char *err, size_t errlen);
/* Stops the loop watchers (close callbacks run on the loop). */
void producers_close_handles(kd_producers *p);
/* Blocking: destroys the librdkafka handles. Call only after the loop ends. */
void producers_destroy(kd_producers *p);

kd_cluster *producers_cluster(kd_producers *p, const char *name, uint32_t len); /* len 0: default */
size_t producers_count(kd_producers *p);
kd_cluster *producers_cluster_at(kd_producers *p, size_t i);
const kd_producer_counters *producers_counters(kd_producers *p);
/* Total messages waiting in all producers' queues. */
int producers_outq_len(kd_producers *p);
/* Serves every pending event now (used while shutting down). */
void producers_drain(kd_producers *p);
/* Purges what is still queued/in flight; outcomes arrive as failures. */
void producers_purge(kd_producers *p);
/* From now on failed outcomes are tallied per topic for the shutdown log. */
void producers_begin_shutdown(kd_producers *p);
/* Logs the shutdown tally: count and topics of undelivered messages.
 * Returns the number of undelivered messages. */
uint64_t producers_log_undelivered(kd_producers *p);

const char *cluster_name(const kd_cluster *c);
const kd_cluster_conf *cluster_conf(const kd_cluster *c);
const char *cluster_bootstrap(const kd_cluster *c);
rd_kafka_t *cluster_rk(kd_cluster *c);
/* A caller waits (ack=wait produce, flush): asks librdkafka to send what is
 * queued now rather than after linger.ms. No-op when linger.ms is 0. Never
 * blocks: a helper thread of the cluster, started on first use and joined
 * by producers_destroy, calls rd_kafka_flush() with a window of
 * min(linger.ms + 1, 10) ms, during which librdkafka sends everything of
 * this producer without lingering (other connections' batches included).
 * Requests while a window is open are covered by it or start the next. */
void cluster_send_now(kd_cluster *c);
/* Latest librdkafka statistics JSON or NULL (owned by the cluster). */
const char *cluster_stats_json(const kd_cluster *c);

/* Topic handle for name (created on first use, owned by the cluster).
 * Returns NULL if name is not a valid topic name. */
kd_topic *cluster_topic(kd_cluster *c, const char *name, uint32_t len);
/* Partitions in the topic's metadata snapshot, which decides where runs of
 * unkeyed values go (producer_send_values); 0 until the first one arrives
 * (it is fetched on the thread pool when the topic is first used, then every
 * 10 s and after delivery failures while the topic is in use). */
int32_t topic_partition_count(const kd_topic *t);

/* Outboxes: one per connection. */
kd_outbox *outbox_create(kd_producers *p, uint64_t conn_id, const kd_outbox_ops *ops, void *owner);
/* The connection is gone: drop waiters and uncollected runs; the outbox is
 * freed now or when its last in-flight message has an outcome. */
void outbox_orphan(kd_producers *p, kd_outbox *ob);
/* Asks for a changed() call after the next delivery events are served. */
void outbox_wait_room(kd_producers *p, kd_outbox *ob);
/* Takes up to max messages worth of runs (splitting a run if needed) into
 * out (capacity out_cap runs). Returns runs written. */
uint32_t outbox_take(kd_outbox *ob, uint64_t max, kd_run *out, uint32_t out_cap);

typedef struct kd_message {
	const void *value;
	size_t value_len;
	const void *key;
	size_t key_len;
	rd_kafka_headers_t *headers; /* ownership passes to librdkafka on success */
	int64_t timestamp;           /* 0: now */
	int32_t partition;           /* RD_KAFKA_PARTITION_UA: partitioner */
} kd_message;

/* Enqueues one message. ack/seq/partitioner travel in the opaque. Returns
 * RD_KAFKA_RESP_ERR_NO_ERROR (in flight; outcome later through the outbox)
 * or the librdkafka error (nothing enqueued; _QUEUE_FULL means retry). */
rd_kafka_resp_err_t producer_send(kd_producers *p, kd_topic *t, kd_outbox *ob, int ack, int partitioner,
				  uint64_t seq, const kd_message *m);
/* A bare value: no key, headers or timestamp; the partitioner decides. */
typedef struct kd_value {
	const void *ptr; /* borrowed: copied by librdkafka (RD_KAFKA_MSG_F_COPY) */
	size_t len;
} kd_value;

/* At most this many values per producer_send_values call. */
#define KD_SEND_VALUES_MAX 256

/* Enqueues vals[0..n-1] (n <= KD_SEND_VALUES_MAX) in order with one
 * rd_kafka_produce_batch() call: what producer_send does n times, but
 * librdkafka takes the topic lock and stamps the messages' timestamp and
 * timeout once per call instead of per message. The call's messages all go
 * to one partition, chosen as librdkafka's sticky partitioner would for an
 * unkeyed message (random among those with a leader, kept for
 * sticky.partitioning.linger.ms), so librdkafka runs no partitioner per
 * message; without a metadata snapshot yet, or with
 * sticky.partitioning.linger.ms = 0, librdkafka's partitioner decides.
 * Message i gets seq first_seq + i (ack none: 0). A message librdkafka
 * refuses for another reason than a full queue gets that outcome
 * (outbox_record_failure), as with producer_send. Stops at the first
 * message that finds the queue full (nothing after it is enqueued either)
 * and sets *full. Returns how many messages have been enqueued or given an
 * outcome: the caller continues (later) from there. */
uint32_t producer_send_values(kd_producers *p, kd_topic *t, kd_outbox *ob, int ack, int partitioner,
			      uint64_t first_seq, const kd_value *vals, uint32_t n, bool *full);
/* Records an outcome that never reached librdkafka (e.g. bad partition). */
void outbox_record_failure(kd_producers *p, kd_outbox *ob, int ack, uint64_t seq, int32_t partition,
			   rd_kafka_resp_err_t err);
/* Starts a waiter for seq..seq+count-1 (NULL on allocation failure). */
kd_waiter *outbox_add_waiter(kd_outbox *ob, uint64_t req_id, uint64_t first_seq, uint32_t count);
/* Calls changed()/wait_done() for outboxes touched since the last call. */
void producers_notify(kd_producers *p);

#endif
