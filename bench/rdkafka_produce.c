/* librdkafka producer benchmark: the "librdkafka direct from C" contender of
 * bench/produce_bench.py.
 *
 *   rdkafka_produce throughput BOOTSTRAP TOPIC COUNT SIZE WARMUP [key=value ...]
 *       produce COUNT messages of SIZE bytes (no key) as fast as the queue
 *       takes them, every outcome collected by dr_msg_cb; rd_kafka_poll(0)
 *       every 1024 messages, flush at the end.
 *   rdkafka_produce latency BOOTSTRAP TOPIC COUNT SIZE WARMUP [key=value ...]
 *       COUNT times: produce one message, poll until its delivery report
 *       arrived; records each round trip.
 *
 * WARMUP messages are produced (and delivered) the same way before the
 * measured phase starts; connecting and the topic's metadata are done before
 * it too.  key=value arguments are librdkafka properties (linger.ms, acks,
 * ...).
 *
 * Prints one JSON object on stdout: the produce phase's wall time and this
 * process's CPU (getrusage RUSAGE_SELF: every thread, librdkafka's own
 * included) over that phase.  With KB_WATCH_PIDS="name:pid,..." in the
 * environment it also reports the utime+stime delta of those processes over
 * the same phase (as "watch": {name: seconds}).
 *
 * Build: cc -O2 -o build/bench/rdkafka_produce bench/rdkafka_produce.c \
 *            $(pkg-config --cflags --libs rdkafka)
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define MAX_WATCH 8

static long delivered, failed;
static rd_kafka_resp_err_t first_err;

typedef struct watch {
	char name[32];
	long pid;
	double start;
} watch;

static watch watches[MAX_WATCH];
static int n_watches;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime+stime of a process in seconds from /proc/PID/stat, -1 if unknown. */
static double proc_cpu_s(long pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	/* fields after the command: 3=state ... 14=utime 15=stime */
	unsigned long long ut = 0, st = 0;
	int field = 2;
	for (char *tok = strtok(p + 1, " "); tok; tok = strtok(NULL, " ")) {
		field++;
		if (field == 14)
			ut = strtoull(tok, NULL, 10);
		else if (field == 15) {
			st = strtoull(tok, NULL, 10);
			break;
		}
	}
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void parse_watches(void)
{
	const char *env = getenv("KB_WATCH_PIDS");
	if (!env)
		return;
	char *copy = strdup(env);
	for (char *item = strtok(copy, ","); item && n_watches < MAX_WATCH; item = strtok(NULL, ",")) {
		char *colon = strchr(item, ':');
		if (!colon)
			continue;
		*colon = '\0';
		watch *w = &watches[n_watches++];
		snprintf(w->name, sizeof(w->name), "%s", item);
		w->pid = atol(colon + 1);
	}
	free(copy);
}

static void dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	(void)rk;
	(void)opaque;
	if (m->err) {
		if (!failed)
			first_err = m->err;
		failed++;
	} else {
		delivered++;
	}
}

static void die(const char *what, const char *why)
{
	fprintf(stderr, "rdkafka_produce: %s: %s\n", what, why);
	exit(1);
}

static void produce_one(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *payload, size_t size, long *queue_full)
{
	while (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, (void *)payload, size, NULL, 0,
				NULL) == -1) {
		if (rd_kafka_last_error() != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			die("produce", rd_kafka_err2str(rd_kafka_last_error()));
		(*queue_full)++;
		rd_kafka_poll(rk, 10);
	}
}

/* Produces count messages; lat != NULL: one at a time, each waited for. */
static void run(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *payload, size_t size, long count, double *lat,
		long *queue_full)
{
	long base = delivered + failed;
	for (long i = 0; i < count; i++) {
		if (lat) {
			long before = delivered + failed;
			double s0 = now_s();
			produce_one(rk, rkt, payload, size, queue_full);
			while (delivered + failed == before)
				rd_kafka_poll(rk, 1000);
			lat[i] = (now_s() - s0) * 1e6;
		} else {
			produce_one(rk, rkt, payload, size, queue_full);
			if ((i & 1023) == 0)
				rd_kafka_poll(rk, 0);
		}
	}
	rd_kafka_flush(rk, 120000);
	while (delivered + failed - base < count && rd_kafka_outq_len(rk) > 0)
		rd_kafka_poll(rk, 100);
}

int main(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: %s throughput|latency BOOTSTRAP TOPIC COUNT SIZE WARMUP [key=value ...]\n",
			argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	int latency = strcmp(mode, "latency") == 0;
	if (!latency && strcmp(mode, "throughput") != 0)
		die("mode", "must be throughput or latency");
	long count = atol(argv[4]);
	size_t size = (size_t)atol(argv[5]);
	long warmup = atol(argv[6]);
	if (count <= 0 || warmup < 0)
		die("COUNT/WARMUP", "COUNT must be > 0, WARMUP >= 0");
	parse_watches();

	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "bootstrap.servers", argv[2], errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		die("bootstrap.servers", errstr);
	for (int i = 7; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq)
			die(argv[i], "expected key=value");
		*eq = '\0';
		if (rd_kafka_conf_set(conf, argv[i], eq + 1, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
			die(argv[i], errstr);
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (!rk)
		die("rd_kafka_new", errstr);
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, argv[3], NULL);
	if (!rkt)
		die("rd_kafka_topic_new", rd_kafka_err2str(rd_kafka_last_error()));
	const struct rd_kafka_metadata *md;
	rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 10000);
	if (err)
		die("metadata", rd_kafka_err2str(err));
	rd_kafka_metadata_destroy(md);

	char *payload = malloc(size ? size : 1);
	memset(payload, 'x', size);
	double *lat = latency ? malloc((size_t)(count > warmup ? count : warmup) * sizeof(double)) : NULL;
	long queue_full = 0;

	if (warmup > 0)
		run(rk, rkt, payload, size, warmup, lat, &queue_full);
	long warm_failed = failed;
	delivered = failed = 0;
	queue_full = 0;

	for (int i = 0; i < n_watches; i++)
		watches[i].start = proc_cpu_s(watches[i].pid);
	double c0 = cpu_s(), t0 = now_s();
	run(rk, rkt, payload, size, count, lat, &queue_full);
	double t1 = now_s(), c1 = cpu_s();

	printf("{\"librdkafka\": \"%s\", \"mode\": \"%s\", \"count\": %ld, \"size\": %zu, \"warmup\": %ld, "
	       "\"warmup_failed\": %ld, \"delivered\": %ld, \"failed\": %ld, \"first_error\": \"%s\", "
	       "\"elapsed_s\": %.6f, \"cpu_s\": %.6f, \"queue_full\": %ld, \"watch\": {",
	       rd_kafka_version_str(), mode, count, size, warmup, warm_failed, delivered, failed,
	       failed ? rd_kafka_err2name(first_err) : "", t1 - t0, c1 - c0, queue_full);
	for (int i = 0; i < n_watches; i++) {
		double end = proc_cpu_s(watches[i].pid);
		double d = (end >= 0 && watches[i].start >= 0) ? end - watches[i].start : -1;
		printf("%s\"%s\": %.3f", i ? ", " : "", watches[i].name, d);
	}
	printf("}");
	if (latency) {
		/* raw samples: produce_bench.py computes the percentiles, the same
		 * way for every contender */
		printf(", \"lat_us\": [");
		for (long i = 0; i < count; i++)
			printf("%s%.1f", i ? ", " : "", lat[i]);
		printf("]");
	}
	printf("}\n");
	free(lat);
	free(payload);
	rd_kafka_topic_destroy(rkt);
	rd_kafka_destroy(rk);
	return failed ? 3 : 0;
}
