/* librdkafka consumer benchmark: the "librdkafka from C" contender of
 * bench/consume_bench.py.
 *
 *   rdkafka_consume batch|poll BOOTSTRAP TOPIC PARTITIONS COUNT BATCH [key=value ...]
 *
 * Assigns partitions 0..PARTITIONS-1 of TOPIC at OFFSET_BEGINNING (no group
 * join: a private group.id, no commits) and reads until COUNT messages came:
 * "batch" with rd_kafka_consume_batch_queue() on the consumer queue, up to
 * BATCH messages a call; "poll" with rd_kafka_consumer_poll(), one message a
 * call.  Every message's value length is added up (the same touch the
 * Python contenders do) and each partition's offsets are checked to run
 * 0, 1, 2, ... without gaps or repeats.  key=value arguments are librdkafka
 * properties.
 *
 * Prints one JSON object on stdout with three snapshots -- "start" (before
 * rd_kafka_new), "first" (first message in hand) and "last" (COUNT-th
 * message in hand) -- each with the wall clock, this process's CPU
 * (getrusage RUSAGE_SELF: librdkafka's threads included), the whole
 * machine's busy CPU (/proc/stat) and, with KB_WATCH_PIDS="name:pid,..." in
 * the environment, those processes' utime+stime (/proc/PID/stat).
 *
 * Build (includes rdkafka_common.h): cc -O2 -o build/bench/rdkafka_consume bench/rdkafka_consume.c \
 *            $(pkg-config --cflags --libs rdkafka)
 */
#define BENCH_PROG "rdkafka_consume"
#include "rdkafka_common.h"

#include <stdint.h>

typedef struct snap {
	long n; /* messages in hand */
	double wall, cpu, busy;
	double watch[MAX_WATCH];
} snap;

static long received;

static void take(snap *s)
{
	s->n = received;
	s->wall = now_s();
	s->cpu = self_cpu_s();
	s->busy = system_busy_s();
	for (int i = 0; i < n_watches; i++)
		s->watch[i] = proc_cpu_s(watch_pid[i]);
}

static void print_snap(const char *name, const snap *s)
{
	printf("\"%s\": {\"n\": %ld, \"wall\": %.6f, \"cpu\": %.6f, \"busy\": %.3f, \"watch\": {", name, s->n, s->wall,
	       s->cpu, s->busy);
	for (int i = 0; i < n_watches; i++)
		printf("%s\"%s\": %.3f", i ? ", " : "", watch_name[i], s->watch[i]);
	printf("}}");
}

/* per-partition checks */
static int64_t *next_off;
static long n_parts, bad_order, n_errors, count;
static long long value_bytes;
static char first_error[256];

/* Accounts one message; returns 1 for a data message, 0 for an event/error. */
static int handle(rd_kafka_message_t *m)
{
	if (m->err) {
		if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
			if (!n_errors)
				snprintf(first_error, sizeof(first_error), "%s", rd_kafka_message_errstr(m));
			for (char *c = first_error; *c; c++)
				if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
					*c = '\'';
			n_errors++;
		}
		return 0;
	}
	value_bytes += (long long)m->len;
	if (m->partition < 0 || m->partition >= n_parts || m->offset != next_off[m->partition])
		bad_order++;
	else
		next_off[m->partition] = m->offset + 1;
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: %s batch|poll BOOTSTRAP TOPIC PARTITIONS COUNT BATCH [key=value ...]\n", argv[0]);
		return 2;
	}
	const char *mode = argv[1];
	int poll_mode = strcmp(mode, "poll") == 0;
	if (!poll_mode && strcmp(mode, "batch") != 0)
		die("mode", "must be batch or poll");
	const char *topic = argv[3];
	n_parts = atol(argv[4]);
	count = atol(argv[5]);
	long batch = atol(argv[6]);
	if (n_parts <= 0 || count <= 0 || batch <= 0)
		die("PARTITIONS/COUNT/BATCH", "must be > 0");
	next_off = calloc((size_t)n_parts, sizeof(*next_off));
	parse_watches();

	snap s_start, s_first, s_last;
	take(&s_start);

	char group[64];
	snprintf(group, sizeof(group), "consume-bench-c-%ld", (long)getpid());
	const char *const fixed[][2] = {
		{"bootstrap.servers", argv[2]},
		{"group.id", group},
		{"enable.auto.commit", "false"},
		{"auto.offset.reset", "earliest"},
	};
	rd_kafka_conf_t *conf = new_conf(fixed, sizeof(fixed) / sizeof(fixed[0]), 7, argc, argv);
	rd_kafka_t *rk = new_handle(RD_KAFKA_CONSUMER, conf);
	rd_kafka_poll_set_consumer(rk);
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new((int)n_parts);
	for (long p = 0; p < n_parts; p++)
		rd_kafka_topic_partition_list_add(parts, topic, (int32_t)p)->offset = RD_KAFKA_OFFSET_BEGINNING;
	rd_kafka_resp_err_t err = rd_kafka_assign(rk, parts);
	if (err)
		die("assign", rd_kafka_err2str(err));
	rd_kafka_topic_partition_list_destroy(parts);
	rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(rk);

	rd_kafka_message_t **msgs = malloc((size_t)batch * sizeof(*msgs));
	double deadline = now_s() + 300;
	int got_first = 0;
	long idle_polls = 0;
	while (received < count && now_s() < deadline) {
		if (poll_mode) {
			rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 1000);
			if (!m) {
				idle_polls++;
				continue;
			}
			received += handle(m);
			rd_kafka_message_destroy(m);
		} else {
			ssize_t n = rd_kafka_consume_batch_queue(q, 1000, msgs, (size_t)batch);
			if (n <= 0) {
				idle_polls++;
				continue;
			}
			for (ssize_t i = 0; i < n; i++) {
				received += handle(msgs[i]);
				rd_kafka_message_destroy(msgs[i]);
			}
		}
		if (!got_first && received > 0) {
			take(&s_first);
			got_first = 1;
		}
	}
	take(&s_last);
	if (!got_first)
		s_first = s_last;

	printf("{\"librdkafka\": \"%s\", \"mode\": \"%s\", \"batch\": %ld, \"count\": %ld, \"received\": %ld, "
	       "\"value_bytes\": %lld, \"bad_order\": %ld, \"errors\": %ld, \"first_error\": \"%s\", "
	       "\"idle_polls\": %ld, ",
	       rd_kafka_version_str(), mode, batch, count, received, value_bytes, bad_order, n_errors, first_error,
	       idle_polls);
	print_snap("start", &s_start);
	printf(", ");
	print_snap("first", &s_first);
	printf(", ");
	print_snap("last", &s_last);
	printf("}\n");
	fflush(stdout);

	free(msgs);
	rd_kafka_queue_destroy(q);
	rd_kafka_consumer_close(rk);
	rd_kafka_destroy(rk);
	free(next_off);
	return received == count && !bad_order ? 0 : 3;
}
