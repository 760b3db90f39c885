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
 * Build (includes rdkafka_common.h): cc -O2 -o build/bench/rdkafka_produce bench/rdkafka_produce.c \
 *            $(pkg-config --cflags --libs rdkafka)
 */
#define BENCH_PROG "rdkafka_produce"
#include "rdkafka_common.h"

static long delivered, failed;
static rd_kafka_resp_err_t first_err;

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

	const char *const fixed[][2] = {{"bootstrap.servers", argv[2]}};
	rd_kafka_conf_t *conf = new_conf(fixed, sizeof(fixed) / sizeof(fixed[0]), 7, argc, argv);
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_t *rk = new_handle(RD_KAFKA_PRODUCER, conf);
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

	double watch_start[MAX_WATCH];
	for (int i = 0; i < n_watches; i++)
		watch_start[i] = proc_cpu_s(watch_pid[i]);
	double c0 = self_cpu_s(), t0 = now_s();
	run(rk, rkt, payload, size, count, lat, &queue_full);
	double t1 = now_s(), c1 = self_cpu_s();

	printf("{\"librdkafka\": \"%s\", \"mode\": \"%s\", \"count\": %ld, \"size\": %zu, \"warmup\": %ld, "
	       "\"warmup_failed\": %ld, \"delivered\": %ld, \"failed\": %ld, \"first_error\": \"%s\", "
	       "\"elapsed_s\": %.6f, \"cpu_s\": %.6f, \"queue_full\": %ld, \"watch\": {",
	       rd_kafka_version_str(), mode, count, size, warmup, warm_failed, delivered, failed,
	       failed ? rd_kafka_err2name(first_err) : "", t1 - t0, c1 - c0, queue_full);
	for (int i = 0; i < n_watches; i++) {
		double end = proc_cpu_s(watch_pid[i]);
		double d = (end >= 0 && watch_start[i] >= 0) ? end - watch_start[i] : -1;
		printf("%s\"%s\": %.3f", i ? ", " : "", watch_name[i], d);
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
