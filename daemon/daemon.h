/* daemon: the one struct that holds the daemon's state, passed down
 * explicitly (no other mutable globals). */
#ifndef KAFKAD_DAEMON_H
#define KAFKAD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "consumer.h"
#include "producer.h"

typedef struct kd_session kd_session;

typedef struct kd_daemon_counters {
	uint64_t connections_total, requests, errors, bad_frames, rejected_connections;
} kd_daemon_counters;

typedef struct kd_daemon {
	uv_loop_t *loop;
	kd_config *cfg;
	kd_producers *producers;
	kd_consumers *consumers;
	uv_pipe_t listener;
	bool listening;
	bool socket_activated;
	uv_signal_t sigterm, sigint;
	uv_timer_t watchdog;
	uv_timer_t shutdown_timer;
	/* malloc_trim on the thread pool (daemon_trim_memory): one at a time */
	uv_timer_t trim_timer;
	uv_work_t trim_work;
	bool trim_busy, trim_again;
	uint64_t trims;
	kd_session *sessions; /* uthash by id */
	uint64_t next_session_id;
	uint32_t n_sessions;
	kd_session *draining; /* closed connections whose held produce still enqueues */
	uint32_t background_jobs; /* thread-pool work in flight */
	kd_daemon_counters counters;
	uint64_t start_ms;
	bool shutting_down;
	uint64_t shutdown_deadline_ms;
	int exit_code;
} kd_daemon;

/* Runs the daemon until it is told to stop. Returns the exit code. */
int daemon_run(kd_config *cfg);

kd_session *daemon_find_session(kd_daemon *d, uint64_t id);

/* Hands the memory malloc holds free back to the system, on the thread pool
 * (now, or after the trim in progress). librdkafka's threads allocate
 * fetched messages in malloc arenas of their own and the loop frees them;
 * glibc keeps free pages of those arenas resident, so after a consumer read
 * a backlog the daemon stayed at its peak (measured: 1 GB after two reads of
 * a million messages, 70 MB after a trim). Called when a consumer closed and
 * every TRIM_INTERVAL_MS. */
void daemon_trim_memory(kd_daemon *d);

/* The process's resident and peak resident set (bytes; 0 if unknown). */
void daemon_rss(uint64_t *rss, uint64_t *peak);

#endif
