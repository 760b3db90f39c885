/* consumer_open, consume, commit, committed, seek, watermarks, consumer_close. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "consumer.h"
#include "jobs.h"
#include "errors.h"
#include "log.h"
#include "ops.h"
#include "session.h"
#include "zkmember.h"

#define DEFAULT_CONSUME_MAX 1000
#define DEFAULT_CONSUME_BYTES (1u << 20)
#define DEFAULT_QUERY_TIMEOUT_MS 5000

/* A consume waiting for messages: owned by its session's list. */
typedef struct consume_park {
	uv_timer_t timer;
	kd_session *s;
	uint64_t handle;
	uint64_t req_id;
	uint32_t max;
	size_t max_bytes;
	struct consume_park *next;
} consume_park;

/* --- argument helpers ---------------------------------------------------- */

static kd_attach *get_attach(kd_session *s, const kd_request *req)
{
	int64_t h;
	int r = codec_get_int(req->args, "handle", &h);
	if (r <= 0) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "handle: %s",
				    r == 0 ? "required" : "expected an integer");
		return NULL;
	}
	kd_attach *a = consumers_find(s->d->consumers, (uint64_t)h);
	if (!a) {
		session_reply_error(s, req, KD_ERR_UNKNOWN_HANDLE, "no open consumer has handle %lld", (long long)h);
		return NULL;
	}
	if (attach_conn(a) != s->id) {
		session_reply_error(s, req, KD_ERR_NOT_OWNER, "consumer handle %lld belongs to another connection",
				    (long long)h);
		return NULL;
	}
	return a;
}

/* Parses [[topic, partition, offset?], ...]; with_offset selects the shape. */
static rd_kafka_topic_partition_list_t *parse_tp_list(kd_session *s, const kd_request *req, const char *key,
						     bool with_offset, bool required)
{
	const msgpack_object_array *arr = NULL;
	int r = codec_get_array(req->args, key, &arr);
	if (r < 0 || (r == 0 && required)) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "%s: %s", key,
				    r == 0 ? "required" : "expected a list");
		return NULL;
	}
	rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(arr ? (int)arr->size : 0);
	for (uint32_t i = 0; arr && i < arr->size; i++) {
		const msgpack_object *e = &arr->ptr[i];
		uint32_t want = with_offset ? 3 : 2;
		const msgpack_object *v = e->type == MSGPACK_OBJECT_ARRAY ? e->via.array.ptr : NULL;
		bool ok = v && e->via.array.size == want && v[0].type == MSGPACK_OBJECT_STR &&
			  v[0].via.str.size > 0 && v[0].via.str.size < 256 &&
			  v[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER && v[1].via.u64 <= INT32_MAX &&
			  (!with_offset || v[2].type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
			   (v[2].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && v[2].via.i64 >= -2));
		if (!ok) {
			session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "%s[%u]: expected [topic, partition%s]", key, i,
					    with_offset ? ", offset (>= 0, or -2 earliest, -1 latest)" : "");
			rd_kafka_topic_partition_list_destroy(l);
			return NULL;
		}
		char topic[256];
		memcpy(topic, v[0].via.str.ptr, v[0].via.str.size);
		topic[v[0].via.str.size] = '\0';
		rd_kafka_topic_partition_t *tp = rd_kafka_topic_partition_list_add(l, topic, (int32_t)v[1].via.u64);
		if (with_offset)
			tp->offset = v[2].type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)v[2].via.u64 : v[2].via.i64;
	}
	return l;
}

static void pack_tp_list(msgpack_packer *pk, const rd_kafka_topic_partition_list_t *l)
{
	msgpack_pack_array(pk, l ? (size_t)l->cnt : 0);
	for (int i = 0; l && i < l->cnt; i++) {
		msgpack_pack_array(pk, 3);
		pack_cstr(pk, l->elems[i].topic);
		msgpack_pack_int32(pk, l->elems[i].partition);
		msgpack_pack_int64(pk, l->elems[i].offset);
	}
}

static void reply_empty_ok(kd_session *s, uint64_t id)
{
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, id, true);
	msgpack_pack_map(&w.pk, 0);
	session_send_writer(s, &w);
}

/* --- session bookkeeping ------------------------------------------------- */

static bool session_add_attach(kd_session *s, kd_attach *a)
{
	if (s->n_attaches == s->cap_attaches) {
		uint32_t cap = s->cap_attaches ? s->cap_attaches * 2 : 4;
		kd_attach **na = realloc(s->attaches, cap * sizeof(*na));
		if (!na)
			return false;
		s->attaches = na;
		s->cap_attaches = cap;
	}
	s->attaches[s->n_attaches++] = a;
	return true;
}

static void session_remove_attach(kd_session *s, kd_attach *a)
{
	for (uint32_t i = 0; i < s->n_attaches; i++)
		if (s->attaches[i] == a) {
			s->attaches[i] = s->attaches[--s->n_attaches];
			return;
		}
}

static void on_park_closed(uv_handle_t *h) { free(h->data); }

static consume_park *find_park(kd_session *s, uint64_t handle, bool unlink)
{
	for (consume_park **pp = (consume_park **)&s->consume_parks; *pp; pp = &(*pp)->next) {
		consume_park *p = *pp;
		if (p->handle == handle) {
			if (unlink)
				*pp = p->next;
			return p;
		}
	}
	return NULL;
}

static void drop_park(consume_park *p)
{
	p->timer.data = p;
	uv_close((uv_handle_t *)&p->timer, on_park_closed);
}

/* Answers a consume from a's buffers (possibly empty). */
static void answer_consume(kd_session *s, kd_attach *a, uint64_t req_id, uint32_t max, size_t max_bytes)
{
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, req_id, true);
	attach_take(a, &w.pk, max, max_bytes);
	session_send_writer(s, &w);
}

static void answer_park(kd_session *s, kd_attach *a)
{
	consume_park *p = find_park(s, attach_handle(a), true);
	if (!p)
		return;
	attach_set_waiting(a, false);
	uv_timer_stop(&p->timer);
	s->parked--;
	answer_consume(s, a, p->req_id, p->max, p->max_bytes);
	drop_park(p);
}

static void on_park_timeout(uv_timer_t *t)
{
	consume_park *p = t->data;
	kd_attach *a = consumers_find(p->s->d->consumers, p->handle);
	if (a)
		answer_park(p->s, a);
}

void ops_consumer_detach_all(kd_session *s)
{
	while (s->consume_parks) {
		consume_park *p = s->consume_parks;
		s->consume_parks = p->next;
		uv_timer_stop(&p->timer);
		drop_park(p);
	}
	for (uint32_t i = 0; i < s->n_attaches; i++)
		consumers_detach(s->d->consumers, s->attaches[i], false);
	s->n_attaches = 0;
	free(s->attaches);
	s->attaches = NULL;
	s->cap_attaches = 0;
}

/* --- callbacks from the consumer layer ----------------------------------- */

static void consumer_ready(void *opaque, kd_attach *a)
{
	(void)opaque;
	kd_session *s = attach_owner(a);
	answer_park(s, a);
}

static void consumer_commit_done(void *opaque, uint64_t conn_id, uint64_t req_id, rd_kafka_resp_err_t err,
				 const rd_kafka_topic_partition_list_t *offsets)
{
	kd_daemon *d = opaque;
	kd_session *s = daemon_find_session(d, conn_id);
	if (!s)
		return;
	s->parked--;
	if (err) {
		kd_request req = {.id = req_id, .has_id = true};
		session_reply_kafka_error(s, &req, err, NULL);
	} else {
		kd_writer w;
		writer_init(&w);
		writer_begin_ok(&w, req_id, true);
		msgpack_pack_map(&w.pk, 1);
		pack_cstr(&w.pk, "offsets");
		pack_tp_list(&w.pk, offsets);
		session_send_writer(s, &w);
	}
	session_changed(s);
}

static void consumer_closed(void *opaque) { daemon_trim_memory(opaque); }

const kd_consumer_events ops_consumer_events = {
	.ready = consumer_ready,
	.commit_done = consumer_commit_done,
	.closed = consumer_closed,
};

/* --- consumer_open ------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct open_job {
	kd_consumer_spec spec;
	kd_consumers *cs;
	bool prepare;          /* no such consumer yet: create its handle here */
	kd_consumer *prepared; /* ... created off the loop; owned by the job until attached */
	rd_kafka_resp_err_t err;
	int daemon_err; /* a daemon error code (zookeeper probe) */
	char errmsg[512];
} open_job;

static void open_run(bg_job *job)
{
	open_job *oj = job->data;
	const rd_kafka_metadata_t *md = NULL;
	oj->err = rd_kafka_metadata(cluster_rk(oj->spec.cluster), 1, NULL, &md, DEFAULT_QUERY_TIMEOUT_MS);
	if (oj->err) {
		snprintf(oj->errmsg, sizeof(oj->errmsg), "metadata: %s", rd_kafka_err2str(oj->err));
		return;
	}
	for (uint32_t i = 0; i < oj->spec.n_topics; i++) {
		const rd_kafka_metadata_topic_t *t = NULL;
		for (int j = 0; j < md->topic_cnt && !t; j++)
			if (strcmp(md->topics[j].topic, oj->spec.topics[i]) == 0)
				t = &md->topics[j];
		if (!t || t->err || t->partition_cnt == 0) {
			oj->err = t && t->err ? t->err : RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
			snprintf(oj->errmsg, sizeof(oj->errmsg), "topic %s: %s", oj->spec.topics[i], rd_kafka_err2str(oj->err));
			break;
		}
		oj->spec.partition_counts[i] = t->partition_cnt;
	}
	for (uint32_t i = 0; !oj->err && i < oj->spec.n_partitions; i++)
		if (oj->spec.partitions[i] >= oj->spec.partition_counts[0]) {
			oj->err = RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION;
			snprintf(oj->errmsg, sizeof(oj->errmsg), "topic %s has no partition %d", oj->spec.topics[0],
				 oj->spec.partitions[i]);
		}
	rd_kafka_metadata_destroy(md);
	/* a new ZooKeeper member: find out now whether its ensemble answers
	 * (an existing member has; attaching to it needs no ZooKeeper call) */
	if (!oj->err && oj->prepare && oj->spec.mode == KD_MODE_ZOOKEEPER)
		oj->daemon_err = zk_probe(oj->spec.zk_connect, oj->spec.zk_connection_timeout_ms, oj->errmsg,
					  sizeof(oj->errmsg));
	if (!oj->err && !oj->daemon_err && oj->prepare &&
	    !(oj->prepared = consumers_prepare(oj->cs, &oj->spec, oj->errmsg, sizeof(oj->errmsg))))
		oj->daemon_err = KD_ERR_INVALID_ARGUMENT;
}

static void open_done(bg_job *job, kd_session *s)
{
	open_job *oj = job->data;
	kd_request req = {.id = job->req_id, .has_id = true};
	if (!s)
		return;
	if (oj->err) {
		session_reply_kafka_error(s, &req, oj->err, oj->errmsg);
		return;
	}
	if (oj->daemon_err) {
		session_reply_error(s, &req, oj->daemon_err, "%s", oj->errmsg);
		return;
	}
	if (s->d->shutting_down) {
		session_reply_error(s, &req, KD_ERR_SHUTTING_DOWN, "the daemon is shutting down");
		return;
	}
	kd_attach *a = NULL;
	char err[512];
	kd_consumer *prepared = oj->prepared;
	oj->prepared = NULL; /* consumers_attach takes it */
	int rc = consumers_attach(s->d->consumers, &oj->spec, prepared, s->id, s, &a, err, sizeof(err));
	if (rc) {
		session_reply_error(s, &req, rc, "%s", err);
		return;
	}
	if (!session_add_attach(s, a)) {
		consumers_detach(s->d->consumers, a, false);
		session_reply_error(s, &req, KD_ERR_INTERNAL, "out of memory");
		return;
	}
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, req.id, true);
	const char *member = attach_member_id(a);
	msgpack_pack_map(&w.pk, member ? 4 : 3);
	pack_kv_uint(&w.pk, "handle", attach_handle(a));
	pack_kv_str(&w.pk, "consumer", attach_consumer_key(a));
	pack_kv_uint(&w.pk, "attached", attach_count(a));
	if (member)
		pack_kv_str(&w.pk, "member_id", member);
	session_send_writer(s, &w);
}

static void open_cleanup(bg_job *job)
{
	open_job *oj = job->data;
	consumers_discard(oj->prepared); /* the request failed or its connection went */
	consumer_spec_free(&oj->spec);
	free(oj);
}

/* Fills spec from the request; replies with the error and returns false. */
static bool parse_open(kd_session *s, const kd_request *req, kd_consumer_spec *spec)
{
	const msgpack_object *args = req->args;
	const char *str;
	uint32_t len = 0;
	char q[KD_QUOTE_MAX];
#define FAIL(code, ...)                                       \
	do {                                                  \
		session_reply_error(s, req, code, __VA_ARGS__); \
		return false;                                 \
	} while (0)
	int r = codec_get_str(args, "cluster", &str, &len);
	if (r < 0)
		FAIL(KD_ERR_INVALID_ARGUMENT, "cluster: expected a string");
	spec->cluster = producers_cluster(s->d->producers, r > 0 ? str : NULL, r > 0 ? len : 0);
	if (!spec->cluster)
		FAIL(KD_ERR_UNKNOWN_CLUSTER, "no cluster named '%s'", codec_quote(q, sizeof(q), str, len));
	spec->mode = KD_MODE_SIMPLE;
	r = codec_get_str(args, "mode", &str, &len);
	if (r < 0)
		FAIL(KD_ERR_INVALID_ARGUMENT, "mode: expected a string");
	if (r > 0) {
		if (codec_str_eq(str, len, "simple"))
			spec->mode = KD_MODE_SIMPLE;
		else if (codec_str_eq(str, len, "group"))
			spec->mode = KD_MODE_GROUP;
		else if (codec_str_eq(str, len, "zookeeper") && !zk_available())
			FAIL(KD_ERR_NOT_SUPPORTED, "mode \"zookeeper\": this kafkad was built without libzookeeper_mt");
		else if (codec_str_eq(str, len, "zookeeper"))
			spec->mode = KD_MODE_ZOOKEEPER;
		else
			FAIL(KD_ERR_INVALID_ARGUMENT, "mode: must be \"simple\", \"group\" or \"zookeeper\"");
	}
	r = codec_get_str(args, "group", &str, &len);
	if (r < 0 || (r > 0 && (len == 0 || len > 255)))
		FAIL(KD_ERR_INVALID_ARGUMENT, "group: expected a string of 1..255 bytes");
	if (r > 0)
		spec->group = codec_strdup(str, len);
	if (spec->mode != KD_MODE_SIMPLE && !spec->group)
		FAIL(KD_ERR_INVALID_ARGUMENT, "group: required in %s mode",
		     spec->mode == KD_MODE_GROUP ? "group" : "zookeeper");
	const msgpack_object_array *topics = NULL;
	r = codec_get_array(args, "topics", &topics);
	if (r < 0)
		FAIL(KD_ERR_INVALID_ARGUMENT, "topics: expected a list of strings");
	if (r == 0) {
		r = codec_get_str(args, "topic", &str, &len);
		if (r <= 0)
			FAIL(KD_ERR_INVALID_ARGUMENT, "topic: required (a string), or topics (a list)");
		spec->topics = calloc(1, sizeof(char *));
		spec->topics[0] = codec_strdup(str, len);
		spec->n_topics = 1;
	} else {
		if (topics->size == 0 || topics->size > 1000)
			FAIL(KD_ERR_INVALID_ARGUMENT, "topics: expected 1..1000 topics");
		spec->topics = calloc(topics->size, sizeof(char *));
		for (uint32_t i = 0; i < topics->size; i++) {
			if (topics->ptr[i].type != MSGPACK_OBJECT_STR)
				FAIL(KD_ERR_INVALID_ARGUMENT, "topics[%u]: expected a string", i);
			spec->topics[spec->n_topics++] = codec_strdup(topics->ptr[i].via.str.ptr, topics->ptr[i].via.str.size);
		}
		qsort(spec->topics, spec->n_topics, sizeof(char *), cmp_str);
		for (uint32_t i = 1; i < spec->n_topics; i++)
			if (strcmp(spec->topics[i], spec->topics[i - 1]) == 0)
				FAIL(KD_ERR_INVALID_ARGUMENT, "topics: '%s' is listed twice", spec->topics[i]);
	}
	for (uint32_t i = 0; i < spec->n_topics; i++)
		if (!cluster_topic(spec->cluster, spec->topics[i], (uint32_t)strlen(spec->topics[i])))
			FAIL(KD_ERR_INVALID_ARGUMENT, "topic '%.64s' is not a valid topic name", spec->topics[i]);
	spec->partition_counts = calloc(spec->n_topics, sizeof(int32_t));
	if (spec->mode != KD_MODE_GROUP && spec->n_topics != 1)
		FAIL(KD_ERR_INVALID_ARGUMENT, "topics: a %s consumer reads exactly one topic",
		     spec->mode == KD_MODE_SIMPLE ? "simple" : "zookeeper");
	const msgpack_object_array *parts = NULL;
	r = codec_get_array(args, "partitions", &parts);
	if (r < 0 || (r > 0 && spec->mode != KD_MODE_SIMPLE))
		FAIL(KD_ERR_INVALID_ARGUMENT, "partitions: a list of partition ids, simple mode only");
	if (r > 0) {
		if (parts->size == 0)
			FAIL(KD_ERR_INVALID_ARGUMENT, "partitions: must not be empty");
		spec->partitions = calloc(parts->size, sizeof(int32_t));
		for (uint32_t i = 0; i < parts->size; i++) {
			if (parts->ptr[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER || parts->ptr[i].via.u64 > INT32_MAX)
				FAIL(KD_ERR_INVALID_ARGUMENT, "partitions[%u]: expected a partition id >= 0", i);
			spec->partitions[i] = (int32_t)parts->ptr[i].via.u64;
			for (uint32_t j = 0; j < i; j++)
				if (spec->partitions[j] == spec->partitions[i])
					FAIL(KD_ERR_INVALID_ARGUMENT, "partitions: %d is listed twice", spec->partitions[i]);
			spec->n_partitions++;
		}
	}
	const msgpack_object_array *offs = NULL;
	r = codec_get_array(args, "offsets", &offs);
	if (r < 0 || (r > 0 && spec->mode != KD_MODE_SIMPLE))
		FAIL(KD_ERR_INVALID_ARGUMENT, "offsets: a list of [partition, offset], simple mode only");
	if (r > 0 && offs->size > 0) {
		spec->offsets = calloc(offs->size, sizeof(*spec->offsets));
		for (uint32_t i = 0; i < offs->size; i++) {
			const msgpack_object *e = &offs->ptr[i];
			const msgpack_object *v = e->type == MSGPACK_OBJECT_ARRAY && e->via.array.size == 2 ? e->via.array.ptr : NULL;
			if (!v || v[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || v[0].via.u64 > INT32_MAX ||
			    !(v[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER ||
			      (v[1].type == MSGPACK_OBJECT_NEGATIVE_INTEGER && v[1].via.i64 >= -2)))
				FAIL(KD_ERR_INVALID_ARGUMENT, "offsets[%u]: expected [partition, offset >= -2]", i);
			spec->offsets[i][0] = (int64_t)v[0].via.u64;
			spec->offsets[i][1] = v[1].type == MSGPACK_OBJECT_POSITIVE_INTEGER ? (int64_t)v[1].via.u64 : v[1].via.i64;
			spec->n_offsets++;
		}
	}
	spec->auto_offset_reset = RD_KAFKA_OFFSET_END;
	r = codec_get_str(args, "auto_offset_reset", &str, &len);
	if (r < 0)
		FAIL(KD_ERR_INVALID_ARGUMENT, "auto_offset_reset: expected \"earliest\" or \"latest\"");
	if (r > 0) {
		if (codec_str_eq(str, len, "earliest"))
			spec->auto_offset_reset = RD_KAFKA_OFFSET_BEGINNING;
		else if (!codec_str_eq(str, len, "latest"))
			FAIL(KD_ERR_INVALID_ARGUMENT, "auto_offset_reset: expected \"earliest\" or \"latest\"");
	}
	if (codec_get_bool(args, "reset_offset_on_start", &spec->reset_offset_on_start) < 0)
		FAIL(KD_ERR_INVALID_ARGUMENT, "reset_offset_on_start: expected a boolean");
	r = codec_get_str(args, "assignor", &str, &len);
	if (r < 0)
		FAIL(KD_ERR_INVALID_ARGUMENT, "assignor: expected a string");
	if (r > 0) {
		if (spec->mode == KD_MODE_ZOOKEEPER && !codec_str_eq(str, len, "range") &&
		    !codec_str_eq(str, len, "roundrobin"))
			FAIL(KD_ERR_INVALID_ARGUMENT, "assignor: must be range or roundrobin in zookeeper mode");
		if (!codec_str_eq(str, len, "range") && !codec_str_eq(str, len, "roundrobin") &&
		    !codec_str_eq(str, len, "cooperative-sticky"))
			FAIL(KD_ERR_INVALID_ARGUMENT, "assignor: must be range, roundrobin or cooperative-sticky");
		spec->assignor = codec_strdup(str, len);
	}
	r = codec_get_str(args, "zookeeper_connect", &str, &len);
	if (r < 0 || (r > 0 && (len == 0 || len > 1000)))
		FAIL(KD_ERR_INVALID_ARGUMENT, "zookeeper_connect: expected \"host:port[,host:port...][/chroot]\"");
	if (r > 0 && spec->mode != KD_MODE_ZOOKEEPER)
		FAIL(KD_ERR_INVALID_ARGUMENT, "zookeeper_connect: zookeeper mode only");
	if (r == 0 && spec->mode == KD_MODE_ZOOKEEPER)
		FAIL(KD_ERR_INVALID_ARGUMENT, "zookeeper_connect: required in zookeeper mode");
	if (r > 0)
		spec->zk_connect = codec_strdup(str, len);
	spec->zk_py3_owners_path = true;
	r = codec_get_str(args, "zookeeper_owners_layout", &str, &len);
	if (r < 0 || (r > 0 && !codec_str_eq(str, len, "pykafka-py3") && !codec_str_eq(str, len, "topic")))
		FAIL(KD_ERR_INVALID_ARGUMENT, "zookeeper_owners_layout: expected \"pykafka-py3\" or \"topic\"");
	if (r > 0 && spec->mode != KD_MODE_ZOOKEEPER)
		FAIL(KD_ERR_INVALID_ARGUMENT, "zookeeper_owners_layout: zookeeper mode only");
	if (r > 0)
		spec->zk_py3_owners_path = codec_str_eq(str, len, "pykafka-py3");
	static const struct {
		const char *name;
		int64_t def, min, max;
	} zk_ints[] = {
	    {"zookeeper_session_timeout_ms", 10000, 1000, 600000},
	    {"zookeeper_connection_timeout_ms", 6000, 100, 600000},
	    {"rebalance_backoff_ms", 2000, 0, 600000},
	};
	uint32_t *zk_dst[] = {&spec->zk_session_timeout_ms, &spec->zk_connection_timeout_ms,
			      &spec->rebalance_backoff_ms};
	for (size_t i = 0; i < sizeof(zk_ints) / sizeof(zk_ints[0]); i++) {
		int64_t v = zk_ints[i].def;
		r = codec_get_int(args, zk_ints[i].name, &v);
		if (r < 0 || v < zk_ints[i].min || v > zk_ints[i].max)
			FAIL(KD_ERR_INVALID_ARGUMENT, "%s: expected an integer in [%lld, %lld]", zk_ints[i].name,
			     (long long)zk_ints[i].min, (long long)zk_ints[i].max);
		if (r > 0 && spec->mode != KD_MODE_ZOOKEEPER)
			FAIL(KD_ERR_INVALID_ARGUMENT, "%s: zookeeper mode only", zk_ints[i].name);
		*zk_dst[i] = (uint32_t)v;
	}
	int64_t ac = 0;
	r = codec_get_int(args, "auto_commit_interval_ms", &ac);
	if (r < 0 || ac < 0 || ac > 86400000)
		FAIL(KD_ERR_INVALID_ARGUMENT, "auto_commit_interval_ms: expected an integer in [0, 86400000]");
	if (ac > 0 && !spec->group)
		FAIL(KD_ERR_INVALID_ARGUMENT, "auto_commit_interval_ms: needs a group to commit to");
	spec->auto_commit_interval_ms = (uint32_t)ac;
#undef FAIL
	return true;
}

void op_consumer_open(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	if (s->d->shutting_down) {
		session_reply_error(s, req, KD_ERR_SHUTTING_DOWN, "the daemon is shutting down");
		return;
	}
	open_job *oj = calloc(1, sizeof(*oj));
	bg_job *job = calloc(1, sizeof(*job));
	if (!oj || !job) {
		free(oj);
		free(job);
		session_reply_error(s, req, KD_ERR_INTERNAL, "out of memory");
		return;
	}
	if (!parse_open(s, req, &oj->spec)) {
		consumer_spec_free(&oj->spec);
		free(oj);
		free(job);
		return;
	}
	oj->cs = s->d->consumers;
	oj->prepare = !consumers_exists(oj->cs, &oj->spec);
	job->run = open_run;
	job->done = open_done;
	job->cleanup = open_cleanup;
	job->data = oj;
	if (!bg_start(s, req, job)) {
		open_cleanup(job);
		free(job);
		session_reply_error(s, req, KD_ERR_INTERNAL, "cannot queue the request");
	}
}

/* --- consume / commit / seek / close -------------------------------------- */

void op_consume(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	kd_attach *a = get_attach(s, req);
	if (!a)
		return;
	int64_t max = DEFAULT_CONSUME_MAX, max_bytes = DEFAULT_CONSUME_BYTES, timeout = 0;
	int r1 = codec_get_int(req->args, "max", &max);
	int r2 = codec_get_int(req->args, "max_bytes", &max_bytes);
	int r3 = codec_get_int(req->args, "timeout_ms", &timeout);
	if (r1 < 0 || max < 1 || max > 1000000 || r2 < 0 || max_bytes < 1 || max_bytes > (int64_t)s->d->cfg->max_frame / 2 ||
	    r3 < 0 || timeout < 0 || timeout > 3600000) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT,
				    "max: 1..1000000, max_bytes: 1..max_frame/2, timeout_ms: 0..3600000");
		return;
	}
	if (find_park(s, attach_handle(a), false)) {
		session_reply_error(s, req, KD_ERR_INVALID_STATE, "a consume is already waiting on this handle");
		return;
	}
	if (timeout == 0 || attach_has_output(a)) {
		answer_consume(s, a, req->id, (uint32_t)max, (size_t)max_bytes);
		return;
	}
	consume_park *p = calloc(1, sizeof(*p));
	if (!p || uv_timer_init(s->d->loop, &p->timer) != 0) {
		free(p);
		session_reply_error(s, req, KD_ERR_INTERNAL, "out of memory");
		return;
	}
	p->timer.data = p;
	p->s = s;
	p->handle = attach_handle(a);
	p->req_id = req->id;
	p->max = (uint32_t)max;
	p->max_bytes = (size_t)max_bytes;
	p->next = s->consume_parks;
	s->consume_parks = p;
	s->parked++;
	attach_set_waiting(a, true);
	uv_timer_start(&p->timer, on_park_timeout, (uint64_t)timeout, 0);
}

void op_commit(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	kd_attach *a = get_attach(s, req);
	if (!a)
		return;
	rd_kafka_topic_partition_list_t *l = NULL;
	if (codec_map_get(req->args, "offsets")) {
		l = parse_tp_list(s, req, "offsets", true, true);
		if (!l)
			return;
		for (int i = 0; i < l->cnt; i++)
			if (l->elems[i].offset < 0) {
				session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "offsets[%d]: a commit needs an offset >= 0",
						    i);
				rd_kafka_topic_partition_list_destroy(l);
				return;
			}
	}
	char err[512];
	int rc = attach_commit(a, l, req->id, err, sizeof(err));
	if (l)
		rd_kafka_topic_partition_list_destroy(l);
	if (rc == 0) {
		s->parked++;
	} else if (rc == -1) {
		kd_writer w;
		writer_init(&w);
		writer_begin_ok(&w, req->id, true);
		msgpack_pack_map(&w.pk, 1);
		pack_cstr(&w.pk, "offsets");
		msgpack_pack_array(&w.pk, 0);
		session_send_writer(s, &w);
	} else {
		session_reply_code(s, req, rc, err);
	}
}

void op_seek(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	kd_attach *a = get_attach(s, req);
	if (!a)
		return;
	rd_kafka_topic_partition_list_t *l = parse_tp_list(s, req, "offsets", true, true);
	if (!l)
		return;
	char err[512];
	int rc = attach_seek(a, l, err, sizeof(err));
	rd_kafka_topic_partition_list_destroy(l);
	if (rc == 0)
		reply_empty_ok(s, req->id);
	else
		session_reply_code(s, req, rc, err);
}

void op_consumer_close(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	kd_attach *a = get_attach(s, req);
	if (!a)
		return;
	consume_park *p = find_park(s, attach_handle(a), false);
	if (p)
		answer_park(s, a);
	session_remove_attach(s, a);
	consumers_detach(s->d->consumers, a, true);
	reply_empty_ok(s, req->id);
}

/* --- committed and watermarks: blocking librdkafka calls on the pool ------ */

typedef struct query_job {
	char *bootstrap;
	char *group;
	rd_kafka_t *rk; /* watermarks: the cluster's producer (lives until exit) */
	rd_kafka_topic_partition_list_t *list;
	rd_kafka_topic_partition_list_t *asked; /* offsets_for_times: the timestamps (list: the answers) */
	char *topic;
	int32_t partition;
	int timeout_ms;
	int64_t low, high; /* watermarks' answer */
	const rd_kafka_topic_partition_t *bad; /* offsets_for_times: the first partition that failed */
} query_job;

static void query_cleanup(bg_job *job)
{
	query_job *q = job->data;
	free(q->bootstrap);
	free(q->group);
	free(q->topic);
	if (q->list)
		rd_kafka_topic_partition_list_destroy(q->list);
	if (q->asked)
		rd_kafka_topic_partition_list_destroy(q->asked);
	free(q);
}

/* A query job's answer: {"offsets": [[topic, partition, offset], ...]}. */
static void job_reply_offsets(bg_job *job, const rd_kafka_topic_partition_list_t *l)
{
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, job->req_id, true);
	msgpack_pack_map(&w.pk, 1);
	pack_cstr(&w.pk, "offsets");
	pack_tp_list(&w.pk, l);
	job->frame = writer_take(&w, &job->frame_len);
}

/* A short-lived consumer handle with the group's id, so the query never
 * touches a daemon-held consumer that may close meanwhile. */
static void committed_run(bg_job *job)
{
	query_job *q = job->data;
	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_conf_set_log_cb(conf, log_rdkafka);
	rd_kafka_conf_set(conf, "bootstrap.servers", q->bootstrap, errstr, sizeof(errstr));
	rd_kafka_conf_set(conf, "group.id", q->group, errstr, sizeof(errstr));
	rd_kafka_conf_set(conf, "client.id", "kafkad-offsets", errstr, sizeof(errstr));
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (!rk) {
		rd_kafka_conf_destroy(conf);
		job_error(job, RD_KAFKA_RESP_ERR__FAIL, errstr);
		return;
	}
	rd_kafka_resp_err_t err = rd_kafka_committed(rk, q->list, q->timeout_ms);
	rd_kafka_destroy(rk);
	if (err) {
		job_error(job, err, NULL);
		return;
	}
	job_reply_offsets(job, q->list);
}

static bool get_timeout(kd_session *s, const kd_request *req, int *out)
{
	int64_t t = DEFAULT_QUERY_TIMEOUT_MS;
	int r = codec_get_int(req->args, "timeout_ms", &t);
	if (r < 0 || t < 1 || t > 600000) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "timeout_ms: expected an integer in [1, 600000]");
		return false;
	}
	*out = (int)t;
	return true;
}

static void start_query(kd_session *s, const kd_request *req, query_job *q, void (*run)(bg_job *))
{
	bg_job *job = calloc(1, sizeof(*job));
	if (!job) {
		bg_job tmp = {.data = q};
		query_cleanup(&tmp);
		session_reply_error(s, req, KD_ERR_INTERNAL, "out of memory");
		return;
	}
	job->run = run;
	job->cleanup = query_cleanup;
	job->data = q;
	if (!bg_start(s, req, job)) {
		query_cleanup(job);
		free(job);
		session_reply_error(s, req, KD_ERR_INTERNAL, "cannot queue the request");
	}
}

void op_committed(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	kd_attach *a = get_attach(s, req);
	if (!a)
		return;
	if (!attach_has_group(a)) {
		session_reply_error(s, req, KD_ERR_INVALID_STATE, "this consumer has no group: nothing is committed");
		return;
	}
	int timeout;
	if (!get_timeout(s, req, &timeout))
		return;
	rd_kafka_topic_partition_list_t *l = NULL;
	if (codec_map_get(req->args, "partitions")) {
		if (!(l = parse_tp_list(s, req, "partitions", false, true)))
			return;
	} else {
		l = attach_partitions(a);
	}
	query_job *q = calloc(1, sizeof(*q));
	if (!q) {
		rd_kafka_topic_partition_list_destroy(l);
		session_reply_error(s, req, KD_ERR_INTERNAL, "out of memory");
		return;
	}
	q->list = l;
	q->timeout_ms = timeout;
	q->group = strdup(attach_group(a));
	q->bootstrap = strdup(attach_bootstrap(a));
	start_query(s, req, q, committed_run);
}

/* Leadership moving (a topic just created, a broker restarting): librdkafka
 * learns the new leader from its next metadata refresh, so asking again a
 * little later succeeds. */
static bool leader_moving(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION || err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE;
}

#define LEADER_RETRY_MS 100

/* Makes a query (ask, with the time left) and makes it again every
 * LEADER_RETRY_MS while leadership moves, within q->timeout_ms; returns the
 * last answer. A pool thread: the sleeps block nobody. */
static rd_kafka_resp_err_t ask_while_leader_moves(query_job *q, rd_kafka_resp_err_t (*ask)(query_job *q, int timeout_ms))
{
	uint64_t deadline = uv_hrtime() + (uint64_t)q->timeout_ms * 1000000u;
	for (;;) {
		uint64_t now = uv_hrtime();
		int left = now < deadline ? (int)((deadline - now) / 1000000u) : 0;
		rd_kafka_resp_err_t err = ask(q, left > 0 ? left : 1);
		if (!leader_moving(err) || left <= LEADER_RETRY_MS)
			return err;
		uv_sleep(LEADER_RETRY_MS);
	}
}

static rd_kafka_resp_err_t ask_watermarks(query_job *q, int timeout_ms)
{
	return rd_kafka_query_watermark_offsets(q->rk, q->topic, q->partition, &q->low, &q->high, timeout_ms);
}

static void watermarks_run(bg_job *job)
{
	query_job *q = job->data;
	rd_kafka_resp_err_t err = ask_while_leader_moves(q, ask_watermarks);
	if (err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION) {
		/* librdkafka says so for a missing topic too: tell them apart like
		 * metadata and consumer_open do (all topics: asking for this one
		 * could have the broker create it) */
		const rd_kafka_metadata_t *md = NULL;
		if (rd_kafka_metadata(q->rk, 1, NULL, &md, q->timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR) {
			bool found = false;
			for (int i = 0; i < md->topic_cnt && !found; i++)
				found = strcmp(md->topics[i].topic, q->topic) == 0 && !md->topics[i].err;
			if (!found)
				err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
			rd_kafka_metadata_destroy(md);
		}
	}
	if (err) {
		char msg[512];
		snprintf(msg, sizeof(msg), "watermarks of %s[%d]: %s", q->topic, q->partition, rd_kafka_err2str(err));
		job_error(job, err, msg);
		return;
	}
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, job->req_id, true);
	msgpack_pack_map(&w.pk, 2);
	pack_kv_int(&w.pk, "low", q->low);
	pack_kv_int(&w.pk, "high", q->high);
	job->frame = writer_take(&w, &job->frame_len);
}

/* The request's cluster (its default when none is named), or NULL with the
 * error answered. */
static kd_cluster *get_cluster(kd_session *s, const kd_request *req)
{
	const char *str = NULL;
	uint32_t n = 0;
	int r = codec_get_str(req->args, "cluster", &str, &n);
	kd_cluster *c = r < 0 ? NULL : producers_cluster(s->d->producers, r > 0 ? str : NULL, r > 0 ? n : 0);
	if (r < 0) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "cluster: expected a string");
		return NULL;
	}
	if (!c) {
		char q[KD_QUOTE_MAX];
		session_reply_error(s, req, KD_ERR_UNKNOWN_CLUSTER, "no cluster named '%s'", codec_quote(q, sizeof(q), str, n));
		return NULL;
	}
	return c;
}

/* One ListOffsets by timestamp for every partition asked (librdkafka
 * writes its answers over the list, so each attempt starts from a copy of
 * the timestamps); the error is its first partition's, else the call's. */
static rd_kafka_resp_err_t ask_offsets_for_times(query_job *q, int timeout_ms)
{
	if (q->list)
		rd_kafka_topic_partition_list_destroy(q->list);
	q->list = rd_kafka_topic_partition_list_copy(q->asked);
	q->bad = NULL;
	rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(q->rk, q->list, timeout_ms);
	/* a partition's own error says more (a missing topic: the call says
	 * _UNKNOWN_PARTITION, the partition UNKNOWN_TOPIC_OR_PART), except the
	 * _IN_PROGRESS of partitions still waiting when the call gave up */
	for (int i = 0; i < q->list->cnt && !q->bad; i++)
		if (q->list->elems[i].err && q->list->elems[i].err != RD_KAFKA_RESP_ERR__IN_PROGRESS)
			q->bad = &q->list->elems[i];
	return q->bad ? q->bad->err : err;
}

/* ListOffsets through the cluster's producer handle (which holds the broker
 * connections already). A partition's error fails the request, naming the
 * partition. */
static void offsets_for_times_run(bg_job *job)
{
	query_job *q = job->data;
	rd_kafka_resp_err_t err = ask_while_leader_moves(q, ask_offsets_for_times);
	if (err) {
		char msg[512];
		if (q->bad)
			snprintf(msg, sizeof(msg), "offsets_for_times of %s[%d]: %s", q->bad->topic, q->bad->partition,
				 rd_kafka_err2str(err));
		else
			snprintf(msg, sizeof(msg), "offsets_for_times: %s", rd_kafka_err2str(err));
		job_error(job, err, msg);
		return;
	}
	job_reply_offsets(job, q->list);
}

void op_offsets_for_times(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	kd_cluster *c = get_cluster(s, req);
	if (!c)
		return;
	rd_kafka_topic_partition_list_t *l = parse_tp_list(s, req, "timestamps", true, true);
	if (!l)
		return;
	int timeout;
	if (l->cnt == 0 || l->cnt > 100000) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "timestamps: 1..100000 partitions");
		rd_kafka_topic_partition_list_destroy(l);
		return;
	}
	if (!get_timeout(s, req, &timeout)) {
		rd_kafka_topic_partition_list_destroy(l);
		return;
	}
	query_job *q = calloc(1, sizeof(*q));
	if (!q) {
		rd_kafka_topic_partition_list_destroy(l);
		session_reply_error(s, req, KD_ERR_INTERNAL, "out of memory");
		return;
	}
	q->rk = cluster_rk(c);
	q->asked = l;
	q->timeout_ms = timeout;
	start_query(s, req, q, offsets_for_times_run);
}

void op_watermarks(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	kd_cluster *c = get_cluster(s, req);
	if (!c)
		return;
	const char *topic;
	uint32_t tlen;
	int64_t part;
	if (codec_get_str(req->args, "topic", &topic, &tlen) <= 0 || tlen == 0 || tlen > 249) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "topic: required (a topic name)");
		return;
	}
	if (codec_get_int(req->args, "partition", &part) <= 0 || part < 0 || part > INT32_MAX) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "partition: required (an integer >= 0)");
		return;
	}
	int timeout;
	if (!get_timeout(s, req, &timeout))
		return;
	query_job *q = calloc(1, sizeof(*q));
	if (!q) {
		session_reply_error(s, req, KD_ERR_INTERNAL, "out of memory");
		return;
	}
	q->rk = cluster_rk(c);
	q->topic = codec_strdup(topic, tlen);
	q->partition = (int32_t)part;
	q->timeout_ms = timeout;
	start_query(s, req, q, watermarks_run);
}
