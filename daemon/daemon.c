#include "daemon.h"

#include <errno.h>
#include <grp.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "log.h"
#include "ops.h"
#include "sd.h"
#include "session.h"

#define SHUTDOWN_TICK_MS 50
#define PURGE_GRACE_MS 5000

kd_session *daemon_find_session(kd_daemon *d, uint64_t id)
{
	kd_session *s;
	HASH_FIND(hh, d->sessions, &id, sizeof(id), s);
	return s;
}

static void raise_fd_limit(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			log_warn("cannot raise the open-file limit: %s", strerror(errno));
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		log_debug("open-file limit: %llu", (unsigned long long)rl.rlim_cur);
}

static void on_connection(uv_stream_t *server, int status)
{
	kd_daemon *d = server->data;
	if (status < 0) {
		log_warn("accept: %s", uv_strerror(status));
		return;
	}
	int r = session_accept(d, server);
	if (r != 0)
		log_warn("accept: %s", uv_strerror(r));
}

/* Refuses to take over a socket another live daemon still serves. */
static int prepare_socket_path(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		log_error("%s exists and is not a socket; refusing to replace it", path);
		return -1;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int live = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	if (live) {
		log_error("%s: another kafkad is already listening there", path);
		return -1;
	}
	unlink(path);
	return 0;
}

static int start_listener(kd_daemon *d)
{
	const kd_config *cfg = d->cfg;
	int r = uv_pipe_init(d->loop, &d->listener, 0);
	if (r != 0) {
		log_error("listener: %s", uv_strerror(r));
		return -1;
	}
	d->listener.data = d;
	d->listening = true;
	int fd = sd_listen_socket();
	if (fd >= 0) {
		d->socket_activated = true;
		r = uv_pipe_open(&d->listener, fd);
		if (r != 0) {
			log_error("socket from systemd: %s", uv_strerror(r));
			return -1;
		}
		log_info("listening on the socket passed by systemd");
	} else {
		if (prepare_socket_path(cfg->socket_path) != 0)
			return -1;
		/* Bind and listen under a temporary name, then rename: the socket
		 * appears at its path only once it accepts connections, with its
		 * final mode and group. */
		char tmp[128];
		int n = snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", cfg->socket_path, (long)getpid());
		const char *bind_path = n > 0 && (size_t)n < sizeof(((struct sockaddr_un *)0)->sun_path) ? tmp
													: cfg->socket_path;
		unlink(tmp);
		mode_t old = umask(0177); /* no window where the socket is wider than configured */
		r = uv_pipe_bind(&d->listener, bind_path);
		umask(old);
		if (r != 0) {
			log_error("%s: cannot bind: %s", bind_path, uv_strerror(r));
			return -1;
		}
		if (cfg->socket_group) {
			struct group *g = getgrnam(cfg->socket_group);
			if (!g) {
				log_error("socket_group: no group named '%s'", cfg->socket_group);
				unlink(bind_path);
				return -1;
			}
			if (chown(bind_path, (uid_t)-1, g->gr_gid) != 0) {
				log_error("%s: chown to group %s: %s", bind_path, cfg->socket_group, strerror(errno));
				unlink(bind_path);
				return -1;
			}
		}
		if (chmod(bind_path, cfg->socket_mode) != 0) {
			log_error("%s: chmod: %s", bind_path, strerror(errno));
			unlink(bind_path);
			return -1;
		}
		r = uv_listen((uv_stream_t *)&d->listener, 1024, on_connection);
		if (r != 0) {
			log_error("listen: %s", uv_strerror(r));
			unlink(bind_path);
			return -1;
		}
		if (bind_path != cfg->socket_path && rename(bind_path, cfg->socket_path) != 0) {
			log_error("%s: cannot move the socket into place: %s", cfg->socket_path, strerror(errno));
			unlink(bind_path);
			return -1;
		}
		log_info("listening on %s (mode %04o)", cfg->socket_path, (unsigned)cfg->socket_mode);
		return 0;
	}
	r = uv_listen((uv_stream_t *)&d->listener, 1024, on_connection);
	if (r != 0) {
		log_error("listen: %s", uv_strerror(r));
		return -1;
	}
	return 0;
}

static void on_closed_noop(uv_handle_t *h) { (void)h; }

static void close_handle(uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, on_closed_noop);
}

static void finish_shutdown(kd_daemon *d)
{
	uint64_t lost = producers_log_undelivered(d->producers);
	if (lost == 0)
		log_info("shutdown: every message was delivered");
	uv_timer_stop(&d->shutdown_timer);
	close_handle((uv_handle_t *)&d->shutdown_timer);
	close_handle((uv_handle_t *)&d->watchdog);
	close_handle((uv_handle_t *)&d->trim_timer);
	close_handle((uv_handle_t *)&d->sigterm);
	close_handle((uv_handle_t *)&d->sigint);
	kd_session *s, *tmp;
	HASH_ITER(hh, d->sessions, s, tmp) {
		session_close(s);
	}
	session_abandon_draining(d);
	producers_close_handles(d->producers);
}

static void on_shutdown_tick(uv_timer_t *t)
{
	kd_daemon *d = t->data;
	int outq = producers_outq_len(d->producers);
	uint64_t now = uv_now(d->loop);
	if (outq == 0) {
		producers_drain(d->producers);
		finish_shutdown(d);
		return;
	}
	if (now >= d->shutdown_deadline_ms + PURGE_GRACE_MS) {
		log_error("shutdown: %d messages still queued after purging; giving up on them", outq);
		producers_drain(d->producers);
		finish_shutdown(d);
		return;
	}
	if (now >= d->shutdown_deadline_ms && d->exit_code == 0) {
		log_warn("shutdown: timeout (%u ms) with %d messages undelivered; purging them",
			 d->cfg->shutdown_timeout_ms, outq);
		d->exit_code = -1; /* marks "purged"; the process still exits 0 */
		producers_purge(d->producers);
	}
}

static void begin_shutdown(kd_daemon *d, const char *why)
{
	if (d->shutting_down) {
		log_warn("%s again: stopping now", why);
		d->shutdown_deadline_ms = uv_now(d->loop);
		return;
	}
	d->shutting_down = true;
	log_info("%s: stopping; flushing producers (up to %u ms)", why, d->cfg->shutdown_timeout_ms);
	sd_stopping();
	if (d->listening) {
		d->listening = false;
		close_handle((uv_handle_t *)&d->listener);
		if (!d->socket_activated)
			unlink(d->cfg->socket_path);
	}
	producers_begin_shutdown(d->producers);
	/* consumers leave their groups now (on the thread pool) */
	kd_session *s, *tmp;
	HASH_ITER(hh, d->sessions, s, tmp) {
		ops_consumer_detach_all(s);
	}
	consumers_close_all(d->consumers);
	d->shutdown_deadline_ms = uv_now(d->loop) + d->cfg->shutdown_timeout_ms;
	uv_timer_start(&d->shutdown_timer, on_shutdown_tick, 0, SHUTDOWN_TICK_MS);
}

static void on_signal(uv_signal_t *h, int signum)
{
	begin_shutdown(h->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

/* Joins the groups of the consumers declared in the config. */
static int declare_consumers(kd_daemon *d)
{
	for (const kd_consumer_conf *k = d->cfg->consumers; k; k = k->next) {
		kd_consumer_spec spec = {0};
		spec.cluster = producers_cluster(d->producers, k->cluster, k->cluster ? (uint32_t)strlen(k->cluster) : 0);
		spec.mode = k->zookeeper ? KD_MODE_ZOOKEEPER : KD_MODE_GROUP;
		if (k->zookeeper) { /* defaults as in consumer_open (SPEC 4.9) */
			spec.zk_connect = strdup(k->zookeeper_connect);
			spec.zk_py3_owners_path = !k->zk_topic_layout;
			spec.zk_session_timeout_ms = k->zookeeper_session_timeout_ms ? k->zookeeper_session_timeout_ms : 10000;
			spec.zk_connection_timeout_ms = 6000;
			spec.rebalance_backoff_ms = k->rebalance_backoff_ms ? k->rebalance_backoff_ms : 2000;
		}
		spec.group = strdup(k->group);
		spec.topics = calloc(k->n_topics, sizeof(char *));
		spec.partition_counts = calloc(k->n_topics, sizeof(int32_t));
		for (uint32_t i = 0; spec.topics && i < k->n_topics; i++)
			spec.topics[spec.n_topics++] = strdup(k->topics[i]);
		spec.assignor = k->assignor ? strdup(k->assignor) : NULL;
		spec.auto_offset_reset = k->auto_offset_reset && strcmp(k->auto_offset_reset, "earliest") == 0
						 ? RD_KAFKA_OFFSET_BEGINNING
						 : RD_KAFKA_OFFSET_END;
		spec.auto_commit_interval_ms = k->auto_commit_interval_ms;
		char err[512];
		if (consumers_declare(d->consumers, &spec, err, sizeof(err)) != 0) {
			log_error("[consumer %s]: %s", k->name, err);
			return -1;
		}
		log_info("[consumer %s]: joining group %s%s", k->name, k->group, k->zookeeper ? " (ZooKeeper)" : "");
	}
	return 0;
}

#define TRIM_INTERVAL_MS 30000

static void trim_run(uv_work_t *w)
{
	(void)w;
	malloc_trim(0);
}

static void trim_done(uv_work_t *w, int status)
{
	(void)status;
	kd_daemon *d = w->data;
	d->trim_busy = false;
	d->trims++;
	if (d->trim_again) {
		d->trim_again = false;
		daemon_trim_memory(d);
	}
}

void daemon_trim_memory(kd_daemon *d)
{
	if (d->trim_busy) {
		d->trim_again = true;
		return;
	}
	d->trim_work.data = d;
	if (uv_queue_work(d->loop, &d->trim_work, trim_run, trim_done) == 0)
		d->trim_busy = true;
}

static void on_trim_timer(uv_timer_t *t) { daemon_trim_memory(t->data); }

void daemon_rss(uint64_t *rss, uint64_t *peak)
{
	*rss = *peak = 0;
	FILE *f = fopen("/proc/self/status", "r");
	if (!f)
		return;
	char line[256];
	unsigned long long kb;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
			*rss = (uint64_t)kb * 1024;
		else if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
			*peak = (uint64_t)kb * 1024;
	}
	fclose(f);
}

static void on_watchdog(uv_timer_t *t)
{
	(void)t;
	sd_watchdog_ping();
}

int daemon_run(kd_config *cfg)
{
	kd_daemon d;
	memset(&d, 0, sizeof(d));
	d.cfg = cfg;
	log_set_level(cfg->log_level);
	signal(SIGPIPE, SIG_IGN);
	raise_fd_limit();
	/* Frames of up to max_frame come and go all the time: keep freed memory
	 * in the heap instead of mapping and trimming it per request (measured:
	 * about 10% of the daemon's CPU per produced message). */
	mallopt(M_MMAP_THRESHOLD, 32 << 20);
	mallopt(M_TRIM_THRESHOLD, 64 << 20);
	uv_loop_t loop;
	if (uv_loop_init(&loop) != 0) {
		log_error("cannot initialise the event loop");
		return 1;
	}
	d.loop = &loop;
	d.start_ms = uv_now(&loop);
	char err[512];
	d.producers = producers_create(&loop, cfg, err, sizeof(err));
	if (!d.producers) {
		log_error("%s", err);
		uv_loop_close(&loop);
		return 1;
	}
	d.consumers = consumers_create(&loop, cfg, &ops_consumer_events, &d);
	if (!d.consumers) {
		log_error("out of memory");
		producers_close_handles(d.producers);
		uv_run(&loop, UV_RUN_DEFAULT);
		producers_destroy(d.producers);
		uv_loop_close(&loop);
		return 1;
	}
	uv_signal_init(&loop, &d.sigterm);
	uv_signal_init(&loop, &d.sigint);
	uv_timer_init(&loop, &d.watchdog);
	uv_timer_init(&loop, &d.shutdown_timer);
	uv_timer_init(&loop, &d.trim_timer);
	d.sigterm.data = d.sigint.data = d.watchdog.data = d.shutdown_timer.data = d.trim_timer.data = &d;
	int rc = 0;
	if (start_listener(&d) != 0) {
		rc = 1;
		if (d.listening)
			close_handle((uv_handle_t *)&d.listener);
		close_handle((uv_handle_t *)&d.sigterm);
		close_handle((uv_handle_t *)&d.sigint);
		close_handle((uv_handle_t *)&d.watchdog);
		close_handle((uv_handle_t *)&d.shutdown_timer);
		close_handle((uv_handle_t *)&d.trim_timer);
		producers_close_handles(d.producers);
		uv_run(&loop, UV_RUN_DEFAULT);
		consumers_destroy(d.consumers);
		producers_destroy(d.producers);
		uv_loop_close(&loop);
		return rc;
	}
	if (declare_consumers(&d) != 0) {
		begin_shutdown(&d, "startup failure");
		rc = 1;
	}
	uv_signal_start(&d.sigterm, on_signal, SIGTERM);
	uv_signal_start(&d.sigint, on_signal, SIGINT);
	uint64_t wd = sd_watchdog_interval_ms();
	if (wd > 0)
		uv_timer_start(&d.watchdog, on_watchdog, wd, wd);
	uv_timer_start(&d.trim_timer, on_trim_timer, TRIM_INTERVAL_MS, TRIM_INTERVAL_MS);
	char status[256];
	size_t nclusters = producers_count(d.producers);
	snprintf(status, sizeof(status), "serving %zu cluster%s on %s", nclusters, nclusters == 1 ? "" : "s",
		 d.socket_activated ? "the systemd socket" : cfg->socket_path);
	log_notice("kafkad %s ready: %s", KAFKAD_VERSION, status);
	sd_ready(status);
	uv_run(&loop, UV_RUN_DEFAULT);
	/* The loop has ended: blocking in librdkafka's destroy is harmless now. */
	consumers_destroy(d.consumers);
	producers_destroy(d.producers);
	if (uv_loop_close(&loop) != 0)
		log_warn("event loop closed with handles still open");
	log_info("stopped");
	return rc;
}
