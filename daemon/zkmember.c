/* zkmember: PyKafka's ZooKeeper-balanced consumer protocol (pykafka 2.8
 * balancedconsumer.py + membershipprotocol.py), from the member's side:
 *
 *   /consumers/<group>/ids/<hostname>:<uuid4>            ephemeral, data = topic
 *   /consumers/<group>/owners/<topic>/<leader>-<partition> ephemeral, data = id
 *
 * (<topic> in the owners path is b'<topic>' for PyKafka on Python 3, which
 * formats its bytes topic name into the path; kd_zk_params.py3_owners_path.)
 *
 * Participants are the ids whose data is our topic, sorted bytewise;
 * partitions are sorted by the string "<topic>-<leader>-<partition>"; range
 * and round-robin assignment work on those two lists exactly as PyKafka's
 * decide_partitions_range/_roundrobin do. A rebalance runs when a child of
 * /brokers/ids, /brokers/topics or the ids node changes, and is retried with
 * backoff while an owner node we want still belongs to someone else.
 * See zkmember.h for the threads and the ownership lease. */
#include "zkmember.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "log.h"

#ifdef KAFKAD_HAVE_ZOOKEEPER

#include <pthread.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>
#define THREADED 1 /* the synchronous API of libzookeeper_mt */
#include <zookeeper/zookeeper.h>

#define ZK_PATH_MAX 1024
#define ZK_DATA_MAX 1024
#define METADATA_TIMEOUT_MS 5000
#define ACK_TIMEOUT_MS 30000
#define ERROR_RETRY_MS 500
#define MAX_BACKOFF_STEPS 5

enum rebalance_rc { RB_DONE, RB_PARTIAL, RB_ERROR };

struct kd_zkmember {
	/* immutable after start */
	char *connect;
	char *group;
	char *topic;
	int assignor;
	uint32_t session_timeout_ms;
	uint32_t backoff_ms;
	char id[300];
	char ids_path[ZK_PATH_MAX];
	char self_path[ZK_PATH_MAX];
	char owners_path[ZK_PATH_MAX];
	rd_kafka_t *rk;
	pthread_t thread;
	atomic_llong lease_until_ms;

	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* --- under mu --- */
	uv_async_t *async; /* NULL once the loop side detached */
	bool stop;
	bool dirty;   /* a watch fired */
	int zk_state; /* last session state the watcher saw (0: none yet) */
	bool expired;
	int32_t *desired; /* owned set for the loop */
	uint32_t n_desired;
	bool desired_commit;
	uint64_t desired_seq, taken_seq, acked_seq;
	kd_zk_changes acked;                             /* to carry out */
	rd_kafka_topic_partition_list_t *final_commits; /* from detach */

	/* --- balancer thread only --- */
	zhandle_t *zh;
	bool registered;
	int32_t *owned; /* what the loop was last told we own */
	uint32_t n_owned;
};

typedef struct zk_part {
	int32_t id;
	int32_t leader;
	char key[300]; /* "<topic>-<leader>-<id>" */
} zk_part;

typedef struct held_node {
	int32_t id;
	char slug[64];
} held_node;

/* snprintf that reports truncation (paths are bounded, names are not). */
static bool fmt_ok(int n, size_t len) { return n > 0 && (size_t)n < len; }

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void zk_log(const char *message) { log_info("zookeeper: %s", message); }

static pthread_once_t zk_once = PTHREAD_ONCE_INIT;
static void zk_global_init(void) { zoo_set_debug_level(ZOO_LOG_LEVEL_WARN); }

bool zk_available(void) { return true; }

static const char *zk_state_name(int state)
{
	if (state == ZOO_CONNECTED_STATE)
		return "connected";
	if (state == ZOO_CONNECTING_STATE)
		return "connecting";
	if (state == ZOO_EXPIRED_SESSION_STATE)
		return "session expired";
	if (state == ZOO_AUTH_FAILED_STATE)
		return "auth failed";
	return "not connected";
}

/* --- probe (thread pool) --------------------------------------------------- */

static void probe_watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
	(void)zh, (void)type, (void)state, (void)path, (void)ctx;
}

int zk_probe(const char *connect, uint32_t timeout_ms, char *err, size_t errlen)
{
	pthread_once(&zk_once, zk_global_init);
	zhandle_t *zh = zookeeper_init2(connect, probe_watcher, 10000, NULL, NULL, 0, zk_log);
	if (!zh) {
		snprintf(err, errlen, "zookeeper_connect: '%s' is not a valid ZooKeeper connect string", connect);
		return KD_ERR_INVALID_ARGUMENT;
	}
	int64_t deadline = now_ms() + timeout_ms;
	while (zoo_state(zh) != ZOO_CONNECTED_STATE && now_ms() < deadline)
		usleep(10000);
	int rc = 0;
	if (zoo_state(zh) != ZOO_CONNECTED_STATE) {
		snprintf(err, errlen, "zookeeper_connect: no ZooKeeper session with %s within %u ms", connect, timeout_ms);
		rc = KD_ERR_TIMED_OUT;
	} else {
		struct Stat st;
		int zrc = zoo_exists(zh, "/brokers/ids", 0, &st);
		if (zrc == ZNONODE) {
			snprintf(err, errlen,
				 "zookeeper_connect: %s has no /brokers/ids: not the ZooKeeper of a Kafka cluster "
				 "(check the chroot)",
				 connect);
			rc = KD_ERR_INVALID_ARGUMENT;
		} else if (zrc != ZOK) {
			snprintf(err, errlen, "zookeeper_connect: %s: %s", connect, zerror(zrc));
			rc = KD_ERR_TIMED_OUT;
		}
	}
	zookeeper_close(zh);
	return rc;
}

/* --- mailbox ------------------------------------------------------------------ */

static void watcher(zhandle_t *zh, int type, int state, const char *path, void *ctx)
{
	(void)zh;
	(void)path;
	kd_zkmember *m = ctx;
	pthread_mutex_lock(&m->mu);
	if (type == ZOO_SESSION_EVENT) {
		m->zk_state = state;
		if (state == ZOO_EXPIRED_SESSION_STATE)
			m->expired = true;
		if (state != ZOO_CONNECTED_STATE)
			atomic_store(&m->lease_until_ms, 0);
	} else {
		m->dirty = true;
	}
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

static void wake_loop_locked(kd_zkmember *m)
{
	if (m->async)
		uv_async_send(m->async);
}

/* Tells the loop the owned set; returns its sequence number. */
static uint64_t publish(kd_zkmember *m, const int32_t *parts, uint32_t n, bool commit)
{
	int32_t *copy = n ? malloc(n * sizeof(*copy)) : NULL;
	if (n && copy)
		memcpy(copy, parts, n * sizeof(*copy));
	else
		n = 0;
	pthread_mutex_lock(&m->mu);
	free(m->desired);
	m->desired = copy;
	m->n_desired = n;
	m->desired_commit = commit;
	uint64_t seq = ++m->desired_seq;
	wake_loop_locked(m);
	pthread_mutex_unlock(&m->mu);
	free(m->owned);
	m->owned = n ? malloc(n * sizeof(*m->owned)) : NULL;
	m->n_owned = m->owned ? n : 0;
	if (m->owned)
		memcpy(m->owned, parts, n * sizeof(*m->owned));
	return seq;
}

static void cond_wait_ms(kd_zkmember *m, int64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(&m->cv, &m->mu, &ts);
}

static void commit_sync(kd_zkmember *m, rd_kafka_topic_partition_list_t *l, const char *why)
{
	if (!l)
		return;
	if (l->cnt > 0) {
		rd_kafka_resp_err_t e = rd_kafka_commit(m->rk, l, 0);
		if (e)
			log_warn("zookeeper member %s: commit before %s: %s", m->id, why, rd_kafka_err2str(e));
		else
			log_info("zookeeper member %s: committed %d partitions before %s", m->id, l->cnt, why);
	}
	rd_kafka_topic_partition_list_destroy(l);
}

static void carry_out(kd_zkmember *m, rd_kafka_topic_partition_list_t *l,
		      rd_kafka_error_t *(*fn)(rd_kafka_t *, const rd_kafka_topic_partition_list_t *), const char *what)
{
	if (!l)
		return;
	rd_kafka_error_t *e = l->cnt ? fn(m->rk, l) : NULL;
	if (e) {
		log_warn("zookeeper member %s: %s: %s", m->id, what, rd_kafka_error_string(e));
		rd_kafka_error_destroy(e);
	}
	rd_kafka_topic_partition_list_destroy(l);
}

/* Tells the loop the owned set, waits until it has applied it, then carries
 * out the librdkafka side. false: stopping, or the loop did not answer. */
static bool sync_with_loop(kd_zkmember *m, const int32_t *parts, uint32_t n, bool commit, const char *why)
{
	uint64_t seq = publish(m, parts, n, commit);
	int64_t deadline = now_ms() + ACK_TIMEOUT_MS;
	pthread_mutex_lock(&m->mu);
	while (m->async && !m->stop && m->acked_seq < seq && now_ms() < deadline)
		cond_wait_ms(m, 200);
	bool ok = !m->stop && (m->acked_seq >= seq || !m->async);
	kd_zk_changes ch = m->acked;
	memset(&m->acked, 0, sizeof(m->acked));
	pthread_mutex_unlock(&m->mu);
	if (!ok)
		log_warn("zookeeper member %s: the loop did not take the new assignment", m->id);
	commit_sync(m, ch.commit, why);
	carry_out(m, ch.unassign, rd_kafka_incremental_unassign, "unassign");
	carry_out(m, ch.assign, rd_kafka_incremental_assign, "assign");
	return ok;
}

/* --- ZooKeeper helpers (balancer thread) -------------------------------------- */

static int ensure_path(zhandle_t *zh, const char *path)
{
	char buf[ZK_PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof(buf))
		return ZBADARGUMENTS;
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		int rc = zoo_create(zh, buf, "", 0, &ZOO_OPEN_ACL_UNSAFE, ZOO_PERSISTENT, NULL, 0);
		buf[i] = saved;
		if (rc != ZOK && rc != ZNODEEXISTS)
			return rc;
	}
	return ZOK;
}

static int register_self(kd_zkmember *m)
{
	int rc = ensure_path(m->zh, m->ids_path);
	if (rc == ZOK)
		rc = ensure_path(m->zh, m->owners_path);
	if (rc == ZOK) {
		rc = zoo_create(m->zh, m->self_path, m->topic, (int)strlen(m->topic), &ZOO_OPEN_ACL_UNSAFE,
				ZOO_EPHEMERAL, NULL, 0);
		if (rc == ZNODEEXISTS)
			rc = ZOK;
	}
	if (rc != ZOK)
		log_warn("zookeeper member %s: cannot register: %s", m->id, zerror(rc));
	else
		log_info("zookeeper member %s: registered in group %s for topic %s", m->id, m->group, m->topic);
	return rc;
}

static int get_data(zhandle_t *zh, const char *path, char *buf, int *len)
{
	int l = *len - 1;
	int rc = zoo_get(zh, path, 0, buf, &l, NULL);
	if (rc == ZOK) {
		if (l < 0)
			l = 0;
		buf[l] = '\0';
		*len = l;
	}
	return rc;
}

/* The data of dir/child as a C string; ZNONODE also when the path would
 * not fit (such a child cannot be one of ours). */
static int child_data(zhandle_t *zh, const char *dir, const char *child, char *buf, int cap)
{
	char path[ZK_PATH_MAX];
	if (!fmt_ok(snprintf(path, sizeof(path), "%s/%s", dir, child), sizeof(path)))
		return ZNONODE;
	return get_data(zh, path, buf, &cap);
}

static int cmp_cstr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int cmp_part(const void *a, const void *b) { return strcmp(((const zk_part *)a)->key, ((const zk_part *)b)->key); }

static bool has_id(const int32_t *v, uint32_t n, int32_t id)
{
	for (uint32_t i = 0; i < n; i++)
		if (v[i] == id)
			return true;
	return false;
}

/* Sorted participants (ids registered for our topic, us included). */
static int get_participants(kd_zkmember *m, char ***out, uint32_t *n_out)
{
	struct String_vector sv = {0};
	int rc = zoo_wget_children(m->zh, m->ids_path, watcher, m, &sv);
	if (rc != ZOK)
		return rc;
	char **v = calloc((size_t)sv.count + 1, sizeof(*v));
	uint32_t n = 0;
	bool me = false;
	for (int i = 0; v && i < sv.count; i++) {
		char data[ZK_DATA_MAX];
		int grc = child_data(m->zh, m->ids_path, sv.data[i], data, sizeof(data));
		if (grc == ZNONODE)
			continue;
		if (grc != ZOK) {
			rc = grc;
			break;
		}
		if (strcmp(data, m->topic) != 0)
			continue;
		me |= strcmp(sv.data[i], m->id) == 0;
		v[n++] = strdup(sv.data[i]);
	}
	deallocate_String_vector(&sv);
	if (!v)
		return ZSYSTEMERROR;
	if (rc == ZOK && !me) { /* our node went with an expired session */
		rc = zoo_create(m->zh, m->self_path, m->topic, (int)strlen(m->topic), &ZOO_OPEN_ACL_UNSAFE,
				ZOO_EPHEMERAL, NULL, 0);
		if (rc == ZNODEEXISTS)
			rc = ZOK;
		if (rc == ZOK)
			v[n++] = strdup(m->id);
	}
	if (rc != ZOK) {
		for (uint32_t i = 0; i < n; i++)
			free(v[i]);
		free(v);
		return rc;
	}
	qsort(v, n, sizeof(*v), cmp_cstr);
	*out = v;
	*n_out = n;
	return ZOK;
}

static void free_strs(char **v, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

/* The topic's partitions with their leaders, sorted like PyKafka sorts them. */
static int get_partitions(kd_zkmember *m, zk_part **out, uint32_t *n_out)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(m->rk, m->topic, NULL);
	if (!rkt)
		return -1;
	const rd_kafka_metadata_t *md = NULL;
	rd_kafka_resp_err_t e = rd_kafka_metadata(m->rk, 0, rkt, &md, METADATA_TIMEOUT_MS);
	rd_kafka_topic_destroy(rkt);
	if (e || md->topic_cnt != 1 || md->topics[0].err) {
		log_warn("zookeeper member %s: metadata for %s: %s", m->id, m->topic,
			 rd_kafka_err2str(e ? e : md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
		if (md)
			rd_kafka_metadata_destroy(md);
		return -1;
	}
	const rd_kafka_metadata_topic_t *t = &md->topics[0];
	zk_part *v = calloc((size_t)t->partition_cnt + 1, sizeof(*v));
	if (!v) {
		rd_kafka_metadata_destroy(md);
		return -1;
	}
	for (int i = 0; i < t->partition_cnt; i++) {
		v[i].id = t->partitions[i].id;
		v[i].leader = t->partitions[i].leader;
		snprintf(v[i].key, sizeof(v[i].key), "%s-%d-%d", m->topic, v[i].leader, v[i].id);
	}
	uint32_t n = (uint32_t)t->partition_cnt;
	rd_kafka_metadata_destroy(md);
	qsort(v, n, sizeof(*v), cmp_part);
	*out = v;
	*n_out = n;
	return 0;
}

/* PyKafka's decide_partitions_range / _roundrobin. new_set gets the ids. */
static uint32_t decide(const kd_zkmember *m, char **participants, uint32_t np, const zk_part *parts, uint32_t n,
		       int32_t *new_set)
{
	uint32_t idx = 0;
	while (idx < np && strcmp(participants[idx], m->id) != 0)
		idx++;
	if (idx == np || n == 0)
		return 0;
	uint32_t k = 0;
	if (m->assignor == KD_ZK_ROUNDROBIN) {
		for (uint32_t i = 0; i < n; i++)
			if (i % np == idx)
				new_set[k++] = parts[i].id;
	} else {
		uint32_t per = n / np, rem = n % np;
		uint32_t start = per * idx + (idx < rem ? idx : rem);
		uint32_t count = per + (idx + 1 > rem ? 0 : 1);
		for (uint32_t i = start; i < start + count && i < n; i++)
			new_set[k++] = parts[i].id;
	}
	return k;
}

/* Owner nodes of our topic that carry our id. */
static int get_held(kd_zkmember *m, held_node **out, uint32_t *n_out)
{
	struct String_vector sv = {0};
	int rc = zoo_get_children(m->zh, m->owners_path, 0, &sv);
	if (rc != ZOK)
		return rc;
	held_node *v = calloc((size_t)sv.count + 1, sizeof(*v));
	uint32_t n = 0;
	for (int i = 0; v && i < sv.count; i++) {
		char data[ZK_DATA_MAX];
		int grc = child_data(m->zh, m->owners_path, sv.data[i], data, sizeof(data));
		if (grc == ZNONODE)
			continue;
		if (grc != ZOK) {
			rc = grc;
			break;
		}
		const char *dash = strchr(sv.data[i], '-');
		if (strcmp(data, m->id) != 0 || !dash || strlen(sv.data[i]) >= sizeof(v[n].slug))
			continue;
		v[n].id = (int32_t)strtol(dash + 1, NULL, 10);
		snprintf(v[n].slug, sizeof(v[n].slug), "%s", sv.data[i]);
		n++;
	}
	deallocate_String_vector(&sv);
	if (!v)
		return ZSYSTEMERROR;
	if (rc != ZOK) {
		free(v);
		return rc;
	}
	*out = v;
	*n_out = n;
	return ZOK;
}

static int arm_watch(kd_zkmember *m, const char *path)
{
	struct String_vector sv = {0};
	int rc = zoo_wget_children(m->zh, path, watcher, m, &sv);
	if (rc == ZOK)
		deallocate_String_vector(&sv);
	return rc;
}

static enum rebalance_rc rebalance(kd_zkmember *m)
{
	enum rebalance_rc result = RB_ERROR;
	char **participants = NULL;
	uint32_t np = 0, nparts = 0, n_new = 0, n_held = 0;
	zk_part *parts = NULL;
	held_node *held = NULL;
	int32_t *new_set = NULL, *keep = NULL;
	int rc = arm_watch(m, "/brokers/ids");
	if (rc == ZOK)
		rc = arm_watch(m, "/brokers/topics");
	if (rc == ZOK)
		rc = get_participants(m, &participants, &np); /* arms the group watch */
	if (rc != ZOK) {
		log_warn("zookeeper member %s: rebalance: %s", m->id, zerror(rc));
		goto out;
	}
	if (get_partitions(m, &parts, &nparts) != 0)
		goto out;
	new_set = calloc((size_t)nparts + 1, sizeof(*new_set));
	keep = calloc((size_t)nparts + m->n_owned + 1, sizeof(*keep));
	if (!new_set || !keep)
		goto out;
	n_new = decide(m, participants, np, parts, nparts, new_set);
	if ((rc = get_held(m, &held, &n_held)) != ZOK) {
		log_warn("zookeeper member %s: rebalance: owners: %s", m->id, zerror(rc));
		goto out;
	}
	/* 1. let go of what is no longer ours: the loop first, then ZooKeeper */
	uint32_t n_keep = 0;
	bool releasing = false;
	for (uint32_t i = 0; i < m->n_owned; i++) {
		if (has_id(new_set, n_new, m->owned[i]))
			keep[n_keep++] = m->owned[i];
		else
			releasing = true;
	}
	for (uint32_t i = 0; i < n_held && !releasing; i++)
		releasing = !has_id(new_set, n_new, held[i].id);
	if (releasing) {
		if (!sync_with_loop(m, keep, n_keep, true, "releasing partitions"))
			goto out;
		for (uint32_t i = 0; i < n_held; i++) {
			if (has_id(new_set, n_new, held[i].id))
				continue;
			char path[ZK_PATH_MAX];
			if (!fmt_ok(snprintf(path, sizeof(path), "%s/%s", m->owners_path, held[i].slug), sizeof(path)))
				continue;
			rc = zoo_delete(m->zh, path, -1);
			if (rc != ZOK && rc != ZNONODE) {
				log_warn("zookeeper member %s: release %s: %s", m->id, held[i].slug, zerror(rc));
				goto out;
			}
			log_info("zookeeper member %s: released %s[%d]", m->id, m->topic, held[i].id);
		}
	}
	/* 2. take what is ours now; an owner node still held by the previous
	 * owner (it has not finished its own rebalance) is retried later */
	n_keep = 0;
	for (uint32_t i = 0; i < n_held; i++)
		if (has_id(new_set, n_new, held[i].id) && !has_id(keep, n_keep, held[i].id))
			keep[n_keep++] = held[i].id;
	bool partial = false;
	for (uint32_t i = 0; i < nparts; i++) {
		if (!has_id(new_set, n_new, parts[i].id) || has_id(keep, n_keep, parts[i].id))
			continue;
		char path[ZK_PATH_MAX];
		if (!fmt_ok(snprintf(path, sizeof(path), "%s/%d-%d", m->owners_path, parts[i].leader, parts[i].id),
			    sizeof(path)))
			continue;
		rc = zoo_create(m->zh, path, m->id, (int)strlen(m->id), &ZOO_OPEN_ACL_UNSAFE, ZOO_EPHEMERAL, NULL, 0);
		if (rc == ZOK) {
			keep[n_keep++] = parts[i].id;
			log_info("zookeeper member %s: acquired %s[%d]", m->id, m->topic, parts[i].id);
		} else if (rc == ZNODEEXISTS) {
			partial = true;
		} else {
			log_warn("zookeeper member %s: acquire %s[%d]: %s", m->id, m->topic, parts[i].id, zerror(rc));
			sync_with_loop(m, keep, n_keep, true, "rebalancing");
			goto out;
		}
	}
	sync_with_loop(m, keep, n_keep, true, "rebalancing");
	log_info("zookeeper member %s: %u participants, %u partitions, owning %u of %u assigned%s", m->id, np, nparts,
		 n_keep, n_new, partial ? " (waiting for the previous owners)" : "");
	result = partial ? RB_PARTIAL : RB_DONE;
out:
	if (participants)
		free_strs(participants, np);
	free(parts);
	free(held);
	free(new_set);
	free(keep);
	return result;
}

/* A round trip to ZooKeeper proves the session (and our nodes) alive for at
 * least a session timeout from when it was sent; take three quarters. */
static void renew(kd_zkmember *m)
{
	int64_t t0 = now_ms();
	struct Stat st;
	int rc = zoo_exists(m->zh, m->self_path, 0, &st);
	if (rc == ZOK) {
		int64_t until = t0 + (int64_t)zoo_recv_timeout(m->zh) * 3 / 4;
		int64_t prev = atomic_exchange(&m->lease_until_ms, until);
		if (prev < t0) { /* was lapsed: consumes waiting on us may go on */
			pthread_mutex_lock(&m->mu);
			wake_loop_locked(m);
			pthread_mutex_unlock(&m->mu);
		}
	} else if (rc == ZNONODE) {
		m->registered = false;
	}
}

static void drop_all(kd_zkmember *m)
{
	atomic_store(&m->lease_until_ms, 0);
	sync_with_loop(m, NULL, 0, false, "");
}

static void close_session(kd_zkmember *m)
{
	if (m->zh) {
		zookeeper_close(m->zh);
		m->zh = NULL;
	}
	m->registered = false;
}

static bool open_session(kd_zkmember *m)
{
	pthread_mutex_lock(&m->mu);
	m->zk_state = 0;
	m->expired = false;
	pthread_mutex_unlock(&m->mu);
	m->zh = zookeeper_init2(m->connect, watcher, (int)m->session_timeout_ms, NULL, m, 0, zk_log);
	if (!m->zh)
		log_warn("zookeeper member %s: cannot start a session with %s", m->id, m->connect);
	return m->zh != NULL;
}

static void *balancer_main(void *arg)
{
	kd_zkmember *m = arg;
	bool need_rebalance = false;
	uint32_t attempt = 0;
	int64_t retry_at = -1, renew_at = 0, reopen_at = 0;
	int last_state = 0;
	for (;;) {
		pthread_mutex_lock(&m->mu);
		bool stop = m->stop, expired = m->expired, dirty = m->dirty;
		int state = m->zk_state;
		m->expired = false;
		m->dirty = false;
		pthread_mutex_unlock(&m->mu);
		if (stop)
			break;
		int64_t now = now_ms();
		if (state != last_state) {
			log_info("zookeeper member %s: %s", m->id, zk_state_name(state));
			if (state == ZOO_CONNECTED_STATE) { /* (re)connected: confirm and look again */
				renew_at = 0;
				need_rebalance = true;
			}
			last_state = state;
		}
		if (expired && m->zh) {
			log_warn("zookeeper member %s: session expired: dropping every partition, joining again", m->id);
			drop_all(m);
			close_session(m);
			last_state = 0;
			state = 0;
		}
		if (!m->zh && now >= reopen_at) {
			if (!open_session(m))
				reopen_at = now + m->backoff_ms;
		}
		if (m->zh && state == ZOO_CONNECTED_STATE) {
			if (now >= renew_at) {
				renew(m);
				renew_at = now + zoo_recv_timeout(m->zh) / 4;
			}
			if (!m->registered && register_self(m) == ZOK) {
				m->registered = true;
				need_rebalance = true;
			}
			need_rebalance |= dirty;
			if (m->registered && (need_rebalance || (retry_at >= 0 && now >= retry_at))) {
				need_rebalance = false;
				switch (rebalance(m)) {
				case RB_DONE:
					retry_at = -1;
					attempt = 0;
					break;
				case RB_PARTIAL:
					attempt = attempt < MAX_BACKOFF_STEPS ? attempt + 1 : MAX_BACKOFF_STEPS;
					retry_at = now_ms() + (int64_t)(attempt - 1) * m->backoff_ms + 100;
					break;
				case RB_ERROR:
					retry_at = now_ms() + ERROR_RETRY_MS;
					break;
				}
			}
		}
		/* sleep until something happens or a timer is due */
		int64_t wake = now_ms() + 1000;
		if (m->zh && state == ZOO_CONNECTED_STATE) {
			if (renew_at < wake)
				wake = renew_at;
			if (retry_at >= 0 && retry_at < wake)
				wake = retry_at;
		}
		if (!m->zh && reopen_at < wake)
			wake = reopen_at;
		if (wake < now_ms() + 5)
			wake = now_ms() + 5;
		pthread_mutex_lock(&m->mu);
		int64_t left = wake - now_ms();
		if (!m->stop && !m->dirty && !m->expired && m->zk_state == last_state && left > 0)
			cond_wait_ms(m, left);
		pthread_mutex_unlock(&m->mu);
	}
	/* stopping: the loop has stopped handing out; commit, then let the
	 * session (and with it every owner node) go */
	atomic_store(&m->lease_until_ms, 0);
	pthread_mutex_lock(&m->mu);
	rd_kafka_topic_partition_list_t *final = m->final_commits;
	m->final_commits = NULL;
	pthread_mutex_unlock(&m->mu);
	commit_sync(m, final, "leaving the group");
	close_session(m);
	log_info("zookeeper member %s: left group %s", m->id, m->group);
	return NULL;
}

/* --- loop-side API ---------------------------------------------------------- */

static void make_id(char *buf, size_t len)
{
	char host[256] = "localhost";
	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	unsigned char u[16] = {0};
	size_t got = 0;
	while (got < sizeof(u)) {
		ssize_t r = getrandom(u + got, sizeof(u) - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
	}
	if (got < sizeof(u)) { /* no entropy source: time and pid still make it unique here */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ ((uint64_t)getpid() << 40);
		memcpy(u, &x, sizeof(x));
	}
	u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
	u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	snprintf(buf, len,
		 "%s:%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", host, u[0], u[1], u[2], u[3],
		 u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
}

static void member_free(kd_zkmember *m)
{
	free(m->connect);
	free(m->group);
	free(m->topic);
	free(m->desired);
	free(m->owned);
	rd_kafka_topic_partition_list_t *lists[] = {m->acked.commit, m->acked.unassign, m->acked.assign};
	for (size_t i = 0; i < 3; i++)
		if (lists[i])
			rd_kafka_topic_partition_list_destroy(lists[i]);
	if (m->final_commits)
		rd_kafka_topic_partition_list_destroy(m->final_commits);
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	free(m);
}

kd_zkmember *zkmember_start(const kd_zk_params *p, rd_kafka_t *rk, uv_async_t *async, char *err, size_t errlen)
{
	pthread_once(&zk_once, zk_global_init);
	kd_zkmember *m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	pthread_mutex_init(&m->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cv, &ca);
	pthread_condattr_destroy(&ca);
	m->connect = strdup(p->connect);
	m->group = strdup(p->group);
	m->topic = strdup(p->topic);
	m->assignor = p->assignor;
	m->session_timeout_ms = p->session_timeout_ms;
	m->backoff_ms = p->rebalance_backoff_ms;
	m->rk = rk;
	m->async = async;
	make_id(m->id, sizeof(m->id));
	bool paths = fmt_ok(snprintf(m->ids_path, sizeof(m->ids_path), "/consumers/%s/ids", p->group),
			    sizeof(m->ids_path)) &&
		     fmt_ok(snprintf(m->self_path, sizeof(m->self_path), "%s/%s", m->ids_path, m->id),
			    sizeof(m->self_path)) &&
		     fmt_ok(snprintf(m->owners_path, sizeof(m->owners_path),
				     p->py3_owners_path ? "/consumers/%s/owners/b'%s'" : "/consumers/%s/owners/%s",
				     p->group, p->topic),
			    sizeof(m->owners_path));
	if (!m->connect || !m->group || !m->topic || !paths) {
		snprintf(err, errlen, paths ? "out of memory" : "group or topic name too long for a ZooKeeper path");
		member_free(m);
		return NULL;
	}
	int rc = pthread_create(&m->thread, NULL, balancer_main, m);
	if (rc != 0) {
		snprintf(err, errlen, "cannot start the ZooKeeper balancer thread: %s", strerror(rc));
		member_free(m);
		return NULL;
	}
	log_info("zookeeper member %s: joining group %s on %s (%s)", m->id, m->group, m->connect,
		 m->assignor == KD_ZK_ROUNDROBIN ? "roundrobin" : "range");
	return m;
}

const char *zkmember_id(const kd_zkmember *m) { return m->id; }

bool zkmember_lease_valid(const kd_zkmember *m)
{
	return now_ms() < atomic_load(&((kd_zkmember *)m)->lease_until_ms);
}

bool zkmember_take(kd_zkmember *m, int32_t **parts, uint32_t *n, uint64_t *seq, bool *commit_released)
{
	bool changed = false;
	pthread_mutex_lock(&m->mu);
	if (m->desired_seq != m->taken_seq) {
		changed = true;
		*parts = m->desired;
		*n = m->n_desired;
		*seq = m->desired_seq;
		*commit_released = m->desired_commit;
		m->desired = NULL;
		m->n_desired = 0;
		m->taken_seq = m->desired_seq;
	}
	pthread_mutex_unlock(&m->mu);
	return changed;
}

/* Appends src to *dst (taking src over when *dst is empty); destroys src. */
static void merge_list(rd_kafka_topic_partition_list_t **dst, rd_kafka_topic_partition_list_t *src)
{
	if (!src)
		return;
	if (!*dst) {
		*dst = src;
		return;
	}
	for (int i = 0; i < src->cnt; i++)
		rd_kafka_topic_partition_list_add(*dst, src->elems[i].topic, src->elems[i].partition)->offset =
		    src->elems[i].offset;
	rd_kafka_topic_partition_list_destroy(src);
}

void zkmember_ack(kd_zkmember *m, uint64_t seq, kd_zk_changes *ch)
{
	pthread_mutex_lock(&m->mu);
	merge_list(&m->acked.commit, ch->commit);
	merge_list(&m->acked.unassign, ch->unassign);
	merge_list(&m->acked.assign, ch->assign);
	memset(ch, 0, sizeof(*ch));
	if (seq > m->acked_seq)
		m->acked_seq = seq;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

void zkmember_detach(kd_zkmember *m, rd_kafka_topic_partition_list_t *final_commits)
{
	pthread_mutex_lock(&m->mu);
	m->async = NULL;
	m->final_commits = final_commits;
	atomic_store(&m->lease_until_ms, 0);
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

void zkmember_destroy(kd_zkmember *m)
{
	pthread_mutex_lock(&m->mu);
	m->stop = true;
	pthread_cond_broadcast(&m->cv);
	pthread_mutex_unlock(&m->mu);
	pthread_join(m->thread, NULL);
	member_free(m);
}

#else /* !KAFKAD_HAVE_ZOOKEEPER: built without libzookeeper_mt */

bool zk_available(void) { return false; }

int zk_probe(const char *connect, uint32_t timeout_ms, char *err, size_t errlen)
{
	(void)connect, (void)timeout_ms;
	snprintf(err, errlen, "this kafkad was built without ZooKeeper support (libzookeeper_mt)");
	return KD_ERR_NOT_SUPPORTED;
}

kd_zkmember *zkmember_start(const kd_zk_params *p, rd_kafka_t *rk, uv_async_t *async, char *err, size_t errlen)
{
	(void)p, (void)rk, (void)async;
	snprintf(err, errlen, "this kafkad was built without ZooKeeper support (libzookeeper_mt)");
	return NULL;
}

const char *zkmember_id(const kd_zkmember *m)
{
	(void)m;
	return "";
}

bool zkmember_lease_valid(const kd_zkmember *m)
{
	(void)m;
	return false;
}

bool zkmember_take(kd_zkmember *m, int32_t **parts, uint32_t *n, uint64_t *seq, bool *commit_released)
{
	(void)m, (void)parts, (void)n, (void)seq, (void)commit_released;
	return false;
}

void zkmember_ack(kd_zkmember *m, uint64_t seq, kd_zk_changes *ch)
{
	(void)m, (void)seq, (void)ch;
}

void zkmember_detach(kd_zkmember *m, rd_kafka_topic_partition_list_t *final_commits)
{
	(void)m;
	if (final_commits)
		rd_kafka_topic_partition_list_destroy(final_commits);
}

void zkmember_destroy(kd_zkmember *m) { (void)m; }

#endif
