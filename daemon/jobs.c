#include "jobs.h"

#include <stdlib.h>

#include "daemon.h"
#include "errors.h"
#include "session.h"

static void bg_work(uv_work_t *w)
{
	bg_job *job = w->data;
	job->run(job);
}

static void bg_after(uv_work_t *w, int status)
{
	bg_job *job = w->data;
	job->d->background_jobs--;
	kd_session *s = daemon_find_session(job->d, job->session_id);
	if (s)
		s->parked--;
	if (status != 0) {
		if (s) {
			kd_request req = {.id = job->req_id, .has_id = true};
			session_reply_error(s, &req, KD_ERR_INTERNAL, "request cancelled");
		}
	} else if (job->done) {
		job->done(job, s);
	} else if (s && job->frame) {
		session_send(s, job->frame, job->frame_len);
		job->frame = NULL;
	}
	if (s)
		session_changed(s);
	if (job->cleanup)
		job->cleanup(job);
	free(job->frame);
	free(job);
}

bool bg_start(kd_session *s, const kd_request *req, bg_job *job)
{
	job->d = s->d;
	job->session_id = s->id;
	job->req_id = req->id;
	job->work.data = job;
	if (uv_queue_work(s->d->loop, &job->work, bg_work, bg_after) != 0)
		return false;
	s->d->background_jobs++;
	s->parked++;
	return true;
}

void job_error(bg_job *job, rd_kafka_resp_err_t err, const char *msg)
{
	kd_writer w;
	writer_init(&w);
	writer_kafka_error(&w, job->req_id, true, err, msg);
	job->frame = writer_take(&w, &job->frame_len);
}
