/* jobs: blocking librdkafka calls (metadata, committed offsets, watermarks,
 * consumer_open's topic check) run on libuv's thread pool. The request's
 * connection is looked up again by id when the work is done: it may be gone.
 * The job counts as parked work of its connection meanwhile. */
#ifndef KAFKAD_JOBS_H
#define KAFKAD_JOBS_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "codec.h"

typedef struct kd_daemon kd_daemon;
typedef struct kd_session kd_session;
typedef struct bg_job bg_job;

struct bg_job {
	uv_work_t work;
	kd_daemon *d;
	uint64_t session_id;
	uint64_t req_id;
	void (*run)(bg_job *job);                  /* worker thread: no daemon state */
	void (*done)(bg_job *job, kd_session *s); /* loop thread; s NULL if gone; NULL: send `frame` */
	void (*cleanup)(bg_job *job);             /* frees `data` */
	char *frame; /* a response built by run(), sent as is when done is NULL */
	size_t frame_len;
	void *data;
};

/* Queues job (calloc'ed by the caller, who sets run/done/cleanup/data) for
 * the request. Returns false when it cannot be queued (the caller still owns
 * the job then). */
bool bg_start(kd_session *s, const kd_request *req, bg_job *job);
/* From run(): makes job->frame an error response with a Kafka error. */
void job_error(bg_job *job, rd_kafka_resp_err_t err, const char *msg);

#endif
