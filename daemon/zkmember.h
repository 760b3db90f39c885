/* zkmember: one member of a PyKafka ZooKeeper-balanced consumer group
 * (PyKafka 2.8's BalancedConsumer protocol, protocol/SPEC.md 4.9.1).
 *
 * Threads and ownership:
 * - The member runs a *balancer thread* of its own that makes every
 *   (blocking) ZooKeeper call and the metadata/commit calls on the
 *   consumer's rd_kafka_t. ZooKeeper's own threads only run the watcher,
 *   which touches nothing but the member's mailbox (mutex + condvar).
 * - The loop thread never blocks on ZooKeeper. It learns about ownership
 *   through the mailbox: the balancer publishes the *desired* set of owned
 *   partitions and wakes the loop with the consumer's uv_async_t; the loop
 *   applies it to its partition table (zkmember_take) and acknowledges
 *   (zkmember_ack) with what librdkafka must be told; the balancer makes
 *   those (blocking) commit/unassign/assign calls. It deletes an owner node
 *   only after the acknowledgement, so the loop has stopped handing out a
 *   partition before anyone else can own it, and the loop knows a partition
 *   before librdkafka fetches it.
 * - Ownership is a lease: the balancer renews it by a successful round trip
 *   to ZooKeeper every quarter of the session timeout; a lapsed lease
 *   (disconnected, or the whole process was stopped) makes the loop hand out
 *   nothing (zkmember_lease_valid) until ZooKeeper has confirmed the session.
 * - The kd_zkmember is created on the loop (zkmember_start), detached from
 *   the loop (zkmember_detach, loop thread) and destroyed off the loop
 *   (zkmember_destroy: joins the balancer, closes the ZooKeeper session);
 *   the rd_kafka_t must outlive zkmember_destroy. */
#ifndef KAFKAD_ZKMEMBER_H
#define KAFKAD_ZKMEMBER_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

enum kd_zk_assignor { KD_ZK_RANGE = 0, KD_ZK_ROUNDROBIN = 1 };

typedef struct kd_zk_params {
	const char *connect; /* host:port[,host:port][/chroot] */
	const char *group;
	const char *topic;
	int assignor;                 /* enum kd_zk_assignor */
	uint32_t session_timeout_ms;  /* asked of ZooKeeper (it may negotiate) */
	uint32_t rebalance_backoff_ms;
	/* PyKafka 2.x on Python 3 formats its bytes topic name into the owners
	 * path: /consumers/<group>/owners/b'<topic>'. true: that layout (what a
	 * pip-installed PyKafka does today); false: /owners/<topic> (PyKafka on
	 * Python 2, and Kafka's own old ZooKeeper consumers). */
	bool py3_owners_path;
} kd_zk_params;

typedef struct kd_zkmember kd_zkmember;

/* Whether this build has the ZooKeeper balancer. */
bool zk_available(void);

/* Blocking (thread pool): connects within timeout_ms and checks that the
 * ensemble holds a Kafka cluster (/brokers/ids). Returns 0, or
 * KD_ERR_TIMED_OUT / KD_ERR_INVALID_ARGUMENT with a message in err. */
int zk_probe(const char *connect, uint32_t timeout_ms, char *err, size_t errlen);

/* Loop thread. async is the consumer's initialised uv_async_t; the member
 * signals it whenever the loop has something to apply (and never after
 * zkmember_detach). rk is the consumer's handle (group.id = group). */
kd_zkmember *zkmember_start(const kd_zk_params *p, rd_kafka_t *rk, uv_async_t *async, char *err, size_t errlen);

/* The id registered under /consumers/<group>/ids ("<hostname>:<uuid4>"). */
const char *zkmember_id(const kd_zkmember *m);

/* Any thread: ZooKeeper confirmed the session recently enough that the
 * owner nodes are certainly still ours. */
bool zkmember_lease_valid(const kd_zkmember *m);

/* Loop thread: the desired owned set if it changed since the last take.
 * *parts is malloc'ed (caller frees; NULL when n is 0). *commit_released:
 * whether released partitions' handed-out offsets are to be committed
 * (false when the session expired: they may be someone else's by now). */
bool zkmember_take(kd_zkmember *m, int32_t **parts, uint32_t *n, uint64_t *seq, bool *commit_released);

/* What the loop did with a desired set, for the balancer to carry out on
 * the consumer handle (so the loop never waits on librdkafka's group
 * thread): commit released partitions' handed-out offsets, unassign them,
 * assign the new ones (with their start offsets). Each list may be NULL. */
typedef struct kd_zk_changes {
	rd_kafka_topic_partition_list_t *commit;
	rd_kafka_topic_partition_list_t *unassign;
	rd_kafka_topic_partition_list_t *assign;
} kd_zk_changes;

/* Loop thread: seq applied; the lists in ch move to the member. */
void zkmember_ack(kd_zkmember *m, uint64_t seq, kd_zk_changes *ch);

/* Loop thread: the loop side is going away (the async handle is about to be
 * closed). final_commits (may be NULL) moves to the member and is committed
 * before the ZooKeeper session closes. */
void zkmember_detach(kd_zkmember *m, rd_kafka_topic_partition_list_t *final_commits);

/* Off the loop (blocks up to about a ZooKeeper operation timeout): stops
 * the balancer, commits final_commits, closes the session, frees m. */
void zkmember_destroy(kd_zkmember *m);

#endif
