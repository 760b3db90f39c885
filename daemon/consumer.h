/* consumer: daemon-held Kafka consumers shared by the connections attached to
 * them. One librdkafka consumer per (cluster, mode, group, topics[,
 * partitions]); each partition it holds is leased to one attachment at a
 * time; a partition leaving an attachment that received messages beyond the
 * last commit is rewound to the commit position first (at-least-once).
 *
 * Messages flow: librdkafka consumer queue → io-event pipe → bounded
 * per-partition buffers (a full buffer pauses its partition) → consume. All
 * of it runs on the loop thread; librdkafka callbacks (rebalance, commit)
 * are served from rd_kafka_consume_batch_queue on the loop thread too.
 * In zookeeper mode a kd_zkmember decides the assignment on its own thread
 * and hands it over through a uv_async_t (zkmember.h).
 * Closing a consumer (which blocks while it leaves its group) runs on the
 * thread pool. */
#ifndef KAFKAD_CONSUMER_H
#define KAFKAD_CONSUMER_H

#include <librdkafka/rdkafka.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "producer.h"

enum kd_consumer_mode { KD_MODE_SIMPLE = 0, KD_MODE_GROUP = 1, KD_MODE_ZOOKEEPER = 2 };

typedef struct kd_consumer_spec {
	kd_cluster *cluster;
	int mode;
	char *group;         /* NULL: none (simple mode only) */
	char **topics;       /* sorted, unique */
	int32_t *partition_counts; /* per topic, from metadata */
	uint32_t n_topics;
	int32_t *partitions; /* simple mode: explicit partitions of topics[0]; NULL = all */
	uint32_t n_partitions;
	int64_t (*offsets)[2]; /* simple mode: [partition, offset] start offsets */
	uint32_t n_offsets;
	int64_t auto_offset_reset; /* RD_KAFKA_OFFSET_BEGINNING or _END */
	bool reset_offset_on_start;
	char *assignor;      /* group mode */
	uint32_t auto_commit_interval_ms;
	bool declared;       /* from the config: never lingers out */
	/* zookeeper mode (PyKafka's BalancedConsumer, see zkmember.h) */
	char *zk_connect;
	uint32_t zk_session_timeout_ms;
	uint32_t zk_connection_timeout_ms;
	uint32_t rebalance_backoff_ms;
	bool zk_py3_owners_path; /* see kd_zk_params */
} kd_consumer_spec;

void consumer_spec_free(kd_consumer_spec *spec);

typedef struct kd_consumer kd_consumer;
typedef struct kd_consumers kd_consumers;
typedef struct kd_attach kd_attach;

/* Upward notifications (registered by the ops layer). */
typedef struct kd_consumer_events {
	/* An attachment has messages or events while a consume waits on it. */
	void (*ready)(void *opaque, kd_attach *a);
	/* A commit finished: conn_id/req_id identify the request. */
	void (*commit_done)(void *opaque, uint64_t conn_id, uint64_t req_id, rd_kafka_resp_err_t err,
			    const rd_kafka_topic_partition_list_t *offsets);
	/* A consumer finished closing: its librdkafka handle and buffers are
	 * gone (optional). */
	void (*closed)(void *opaque);
} kd_consumer_events;

kd_consumers *consumers_create(uv_loop_t *loop, const kd_config *cfg, const kd_consumer_events *ev, void *opaque);
/* Starts closing every consumer (shutdown). */
void consumers_close_all(kd_consumers *cs);
/* Number of consumers still open or closing. */
uint32_t consumers_active(const kd_consumers *cs);
void consumers_destroy(kd_consumers *cs);

/* Creates a consumer declared in the config (group mode; kept with no
 * attachment). Returns 0 or -1 with a message in err. */
int consumers_declare(kd_consumers *cs, kd_consumer_spec *spec, char *err, size_t errlen);

/* Loop thread: whether a consumer for spec is open (consumer_open then
 * needs no new librdkafka handle). */
bool consumers_exists(kd_consumers *cs, const kd_consumer_spec *spec);
/* Any thread (the thread pool, for consumer_open): creates the librdkafka
 * side of a new consumer — the blocking part — without touching loop
 * state. spec moves into it. NULL with a message in err on failure. The
 * result goes to consumers_attach or consumers_discard (loop thread). */
kd_consumer *consumers_prepare(kd_consumers *cs, kd_consumer_spec *spec, char *err, size_t errlen);
void consumers_discard(kd_consumer *prepared);
/* Attaches a connection to the consumer described by `prepared` (taken
 * over: activated, or discarded when an equal consumer exists by now) or,
 * when prepared is NULL, by spec (a missing consumer is then created here,
 * blocking); spec is freed either way. Returns 0 and *out, or an error code
 * (KD_ERR_* or KD_ERR_KAFKA_BASE + rd err) with a message in err. */
int consumers_attach(kd_consumers *cs, kd_consumer_spec *spec, kd_consumer *prepared, uint64_t conn_id, void *owner,
		     kd_attach **out, char *err, size_t errlen);
/* Detaches (connection closed or consumer_close): its partitions move on.
 * The last detach closes the consumer at once when leave_now (an explicit
 * consumer_close), else after consumer_linger_ms; declared ones stay. */
void consumers_detach(kd_consumers *cs, kd_attach *a, bool leave_now);
kd_attach *consumers_find(kd_consumers *cs, uint64_t handle);
/* Packs `stats`' consumers list (SPEC 4.7): one map per open consumer. */
void consumers_pack_stats(const kd_consumers *cs, msgpack_packer *pk);

uint64_t attach_handle(const kd_attach *a);
uint64_t attach_conn(const kd_attach *a);
void *attach_owner(const kd_attach *a);
const char *attach_consumer_key(const kd_attach *a);
uint32_t attach_count(const kd_attach *a); /* attachments of its consumer */
bool attach_has_output(const kd_attach *a);
/* Set while a consume waits: ready() fires when output appears. */
void attach_set_waiting(kd_attach *a, bool waiting);
/* Packs the consume result map {topics, messages, events} with at most
 * max messages / max_bytes payload bytes, and hands them out. */
void attach_take(kd_attach *a, msgpack_packer *pk, uint32_t max, size_t max_bytes);

/* Commit: offsets NULL = everything this attachment received. Returns 0 (the
 * result arrives through commit_done) or an error code, message in err. */
int attach_commit(kd_attach *a, const rd_kafka_topic_partition_list_t *offsets, uint64_t req_id, char *err,
		  size_t errlen);
/* Seek partitions leased to this attachment. */
int attach_seek(kd_attach *a, const rd_kafka_topic_partition_list_t *offsets, char *err, size_t errlen);
/* The partitions this attachment holds (caller destroys the list). */
rd_kafka_topic_partition_list_t *attach_partitions(const kd_attach *a);
rd_kafka_t *attach_rk(kd_attach *a);
bool attach_has_group(const kd_attach *a);
const char *attach_group(const kd_attach *a);
const char *attach_bootstrap(const kd_attach *a);
/* zookeeper mode: the id registered in ZooKeeper; NULL in other modes. */
const char *attach_member_id(const kd_attach *a);

#endif
