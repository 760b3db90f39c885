/* hello, ping, stats and metadata. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errors.h"
#include "jobs.h"
#include "log.h"
#include "ops.h"
#include "session.h"

#define PROTOCOL_VERSION 1
#define DEFAULT_METADATA_TIMEOUT_MS 5000

void op_hello(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	int64_t version = PROTOCOL_VERSION;
	int r = codec_get_int(req->args, "version", &version);
	if (r < 0) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "version: expected an integer");
		return;
	}
	const char *client;
	uint32_t client_len;
	if (codec_get_str(req->args, "client", &client, &client_len) < 0) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "client: expected a string");
		return;
	}
	if (version < PROTOCOL_VERSION) {
		session_reply_error(s, req, KD_ERR_UNSUPPORTED_VERSION, "this daemon speaks protocol version %d only",
				    PROTOCOL_VERSION);
		return;
	}
	const kd_config *cfg = s->d->cfg;
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, req->id, req->has_id);
	msgpack_pack_map(&w.pk, 7);
	pack_kv_int(&w.pk, "version", PROTOCOL_VERSION);
	pack_kv_str(&w.pk, "server", "kafkad " KAFKAD_VERSION);
	pack_kv_uint(&w.pk, "max_frame", cfg->max_frame);
	pack_kv_uint(&w.pk, "max_batch", cfg->max_batch);
	pack_kv_uint(&w.pk, "max_pending", cfg->max_pending);
	pack_cstr(&w.pk, "clusters");
	size_t n = producers_count(s->d->producers);
	msgpack_pack_array(&w.pk, n);
	for (size_t i = 0; i < n; i++)
		pack_cstr(&w.pk, cluster_name(producers_cluster_at(s->d->producers, i)));
	pack_kv_str(&w.pk, "default_cluster", cfg->default_cluster);
	session_send_writer(s, &w);
}

void op_ping(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, req->id, req->has_id);
	msgpack_pack_map(&w.pk, 0);
	session_send_writer(s, &w);
}

static void pack_cluster_stats(msgpack_packer *pk, kd_cluster *c)
{
	pack_cstr(pk, cluster_name(c));
	msgpack_pack_map(pk, 3);
	pack_kv_str(pk, "bootstrap", cluster_bootstrap(c));
	pack_kv_int(pk, "outq_len", rd_kafka_outq_len(cluster_rk(c)));
	pack_kv_str(pk, "librdkafka", cluster_stats_json(c));
}

void op_stats(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	kd_daemon *d = s->d;
	const char *name = NULL;
	uint32_t name_len = 0;
	int r = codec_get_str(req->args, "cluster", &name, &name_len);
	if (r < 0) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "cluster: expected a string");
		return;
	}
	kd_cluster *only = NULL;
	char q[KD_QUOTE_MAX];
	if (r > 0 && !(only = producers_cluster(d->producers, name, name_len))) {
		session_reply_error(s, req, KD_ERR_UNKNOWN_CLUSTER, "no cluster named '%s'", codec_quote(q, sizeof(q), name, name_len));
		return;
	}
	const kd_producer_counters *pc = producers_counters(d->producers);
	uint64_t pending = 0;
	for (kd_session *it = d->sessions; it; it = it->hh.next)
		if (it->ob)
			pending += it->ob->queued;
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, req->id, req->has_id);
	msgpack_pack_map(&w.pk, 3);
	pack_cstr(&w.pk, "daemon");
	uint64_t rss, rss_peak;
	daemon_rss(&rss, &rss_peak);
	msgpack_pack_map(&w.pk, 17);
	pack_kv_uint(&w.pk, "uptime_ms", uv_now(d->loop) - d->start_ms);
	pack_kv_uint(&w.pk, "rss_bytes", rss);
	pack_kv_uint(&w.pk, "rss_peak_bytes", rss_peak);
	pack_kv_uint(&w.pk, "memory_trims", d->trims);
	pack_kv_uint(&w.pk, "connections", d->n_sessions);
	pack_kv_uint(&w.pk, "connections_total", d->counters.connections_total);
	pack_kv_uint(&w.pk, "connections_rejected", d->counters.rejected_connections);
	pack_kv_uint(&w.pk, "requests", d->counters.requests);
	pack_kv_uint(&w.pk, "errors", d->counters.errors);
	pack_kv_uint(&w.pk, "bad_frames", d->counters.bad_frames);
	pack_kv_uint(&w.pk, "produced", pc->produced);
	pack_kv_uint(&w.pk, "delivered", pc->delivered);
	pack_kv_uint(&w.pk, "delivery_failed", pc->delivery_failed);
	pack_kv_uint(&w.pk, "orphan_delivered", pc->orphan_delivered);
	pack_kv_uint(&w.pk, "orphan_failed", pc->orphan_failed);
	pack_kv_uint(&w.pk, "enqueue_failed", pc->enqueue_failed);
	pack_kv_uint(&w.pk, "reports_pending", pending);
	pack_cstr(&w.pk, "clusters");
	if (only) {
		msgpack_pack_map(&w.pk, 1);
		pack_cluster_stats(&w.pk, only);
	} else {
		size_t n = producers_count(d->producers);
		msgpack_pack_map(&w.pk, n);
		for (size_t i = 0; i < n; i++)
			pack_cluster_stats(&w.pk, producers_cluster_at(d->producers, i));
	}
	pack_cstr(&w.pk, "consumers");
	consumers_pack_stats(d->consumers, &w.pk);
	session_send_writer(s, &w);
}

/* --- metadata: rd_kafka_metadata blocks, so it runs on the thread pool ----- */

typedef struct metadata_query {
	kd_cluster *cluster;
	char **topics; /* NULL: all */
	uint32_t n_topics;
	int timeout_ms;
} metadata_query;

static int cmp_partition(const void *a, const void *b)
{
	const rd_kafka_metadata_partition_t *x = a, *y = b;
	return (x->id > y->id) - (x->id < y->id);
}

static void pack_int_array(msgpack_packer *pk, const int32_t *v, int n)
{
	msgpack_pack_array(pk, (size_t)n);
	for (int i = 0; i < n; i++)
		msgpack_pack_int32(pk, v[i]);
}

static void pack_topic(msgpack_packer *pk, const rd_kafka_metadata_topic_t *t)
{
	msgpack_pack_map(pk, 3);
	pack_kv_str(pk, "name", t->topic);
	pack_cstr(pk, "error");
	if (t->err)
		pack_kafka_error(pk, t->err, NULL);
	else
		msgpack_pack_nil(pk);
	pack_cstr(pk, "partitions");
	rd_kafka_metadata_partition_t *parts = NULL;
	if (t->partition_cnt > 0) {
		parts = malloc((size_t)t->partition_cnt * sizeof(*parts));
		if (parts) {
			memcpy(parts, t->partitions, (size_t)t->partition_cnt * sizeof(*parts));
			qsort(parts, (size_t)t->partition_cnt, sizeof(*parts), cmp_partition);
		}
	}
	int n = parts ? t->partition_cnt : 0;
	msgpack_pack_array(pk, (size_t)n);
	for (int i = 0; i < n; i++) {
		msgpack_pack_map(pk, 5);
		pack_kv_int(pk, "id", parts[i].id);
		pack_kv_int(pk, "leader", parts[i].leader);
		pack_cstr(pk, "replicas");
		pack_int_array(pk, parts[i].replicas, parts[i].replica_cnt);
		pack_cstr(pk, "isrs");
		pack_int_array(pk, parts[i].isrs, parts[i].isr_cnt);
		pack_cstr(pk, "error");
		if (parts[i].err)
			pack_kafka_error(pk, parts[i].err, NULL);
		else
			msgpack_pack_nil(pk);
	}
	free(parts);
}

static void metadata_run(bg_job *bj)
{
	metadata_query *job = bj->data;
	const rd_kafka_metadata_t *md = NULL;
	rd_kafka_resp_err_t err = rd_kafka_metadata(cluster_rk(job->cluster), 1, NULL, &md, job->timeout_ms);
	if (err) {
		char msg[256];
		snprintf(msg, sizeof(msg), "metadata from cluster %s: %s", cluster_name(job->cluster), rd_kafka_err2str(err));
		job_error(bj, err, msg);
		return;
	}
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, bj->req_id, true);
	msgpack_pack_map(&w.pk, 3);
	pack_kv_str(&w.pk, "cluster", cluster_name(job->cluster));
	pack_cstr(&w.pk, "brokers");
	msgpack_pack_array(&w.pk, (size_t)md->broker_cnt);
	for (int i = 0; i < md->broker_cnt; i++) {
		msgpack_pack_map(&w.pk, 3);
		pack_kv_int(&w.pk, "id", md->brokers[i].id);
		pack_kv_str(&w.pk, "host", md->brokers[i].host);
		pack_kv_int(&w.pk, "port", md->brokers[i].port);
	}
	pack_cstr(&w.pk, "topics");
	if (job->topics == NULL) {
		int n = 0;
		for (int i = 0; i < md->topic_cnt; i++)
			n += md->topics[i].topic[0] != '_';
		msgpack_pack_array(&w.pk, (size_t)n);
		for (int i = 0; i < md->topic_cnt; i++)
			if (md->topics[i].topic[0] != '_')
				pack_topic(&w.pk, &md->topics[i]);
	} else {
		msgpack_pack_array(&w.pk, job->n_topics);
		for (uint32_t j = 0; j < job->n_topics; j++) {
			const rd_kafka_metadata_topic_t *found = NULL;
			for (int i = 0; i < md->topic_cnt && !found; i++)
				if (strcmp(md->topics[i].topic, job->topics[j]) == 0)
					found = &md->topics[i];
			if (found) {
				pack_topic(&w.pk, found);
			} else {
				rd_kafka_metadata_topic_t missing = {.topic = job->topics[j],
								     .err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART};
				pack_topic(&w.pk, &missing);
			}
		}
	}
	rd_kafka_metadata_destroy(md);
	bj->frame = writer_take(&w, &bj->frame_len);
}

static void metadata_cleanup(bg_job *bj)
{
	metadata_query *job = bj->data;
	for (uint32_t i = 0; job->topics && i < job->n_topics; i++)
		free(job->topics[i]);
	free(job->topics);
	free(job);
}

void op_metadata(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	(void)payload;
	(void)len;
	const char *name = NULL;
	uint32_t name_len = 0;
	if (codec_get_str(req->args, "cluster", &name, &name_len) < 0) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "cluster: expected a string");
		return;
	}
	kd_cluster *c = producers_cluster(s->d->producers, name, name_len);
	char q[KD_QUOTE_MAX];
	if (!c) {
		session_reply_error(s, req, KD_ERR_UNKNOWN_CLUSTER, "no cluster named '%s'", codec_quote(q, sizeof(q), name, name_len));
		return;
	}
	int64_t timeout = DEFAULT_METADATA_TIMEOUT_MS;
	int r = codec_get_int(req->args, "timeout_ms", &timeout);
	if (r < 0 || timeout < 1 || timeout > 600000) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "timeout_ms: expected an integer in [1, 600000]");
		return;
	}
	const msgpack_object_array *topics = NULL;
	r = codec_get_array(req->args, "topics", &topics);
	if (r < 0) {
		session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "topics: expected a list of strings");
		return;
	}
	metadata_query *job = calloc(1, sizeof(*job));
	bg_job *bj = calloc(1, sizeof(*bj));
	if (!job || !bj) {
		free(job);
		free(bj);
		session_reply_error(s, req, KD_ERR_INTERNAL, "out of memory");
		return;
	}
	bj->run = metadata_run;
	bj->cleanup = metadata_cleanup;
	bj->data = job;
	job->cluster = c;
	job->timeout_ms = (int)timeout;
	if (topics) {
		job->topics = calloc(topics->size ? topics->size : 1, sizeof(char *));
		for (uint32_t i = 0; job->topics && i < topics->size; i++) {
			const msgpack_object *t = &topics->ptr[i];
			if (t->type != MSGPACK_OBJECT_STR) {
				metadata_cleanup(bj);
				free(bj);
				session_reply_error(s, req, KD_ERR_INVALID_ARGUMENT, "topics[%u]: expected a string", i);
				return;
			}
			job->topics[job->n_topics++] = codec_strdup(t->via.str.ptr, t->via.str.size);
		}
		if (!job->topics || (topics->size && !job->topics[job->n_topics - 1])) {
			metadata_cleanup(bj);
			free(bj);
			session_reply_error(s, req, KD_ERR_INTERNAL, "out of memory");
			return;
		}
	}
	if (!bg_start(s, req, bj)) {
		metadata_cleanup(bj);
		free(bj);
		session_reply_error(s, req, KD_ERR_INTERNAL, "cannot queue the metadata request");
	}
}
