/* producer: where runs of unkeyed values go (producer_send_values), on
 * librdkafka's mock cluster inside the test process, with partitions made
 * leaderless through the mock API.
 *
 * The daemon picks the partition for a run itself (sticky, random among the
 * partitions its metadata snapshot shows with a leader) instead of letting
 * librdkafka's partitioner run per message. These tests check what that
 * must keep: every message delivered, leaderless partitions avoided,
 * stickiness as configured, per-message spreading when stickiness is off,
 * and a switch away from a partition that loses its leader. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "producer.h"
#include "testutil.h"

#include <librdkafka/rdkafka_mock.h> /* after rdkafka.h (producer.h) */

#define TOPIC "sticky-test"
#define PARTITIONS 6
#define RUN 200

typedef struct fixture {
	uv_loop_t loop;
	kd_config cfg;
	kd_producers *p;
	kd_cluster *c;
	kd_topic *t;
	kd_outbox *ob;
	rd_kafka_mock_cluster_t *mock;
	uint64_t next_seq;
	/* outcomes by seq (index seq - 1) */
	int32_t *partition;
	int32_t *err;
	uint64_t cap;
	uint64_t outcomes;
} fixture;

static void on_changed(void *owner) { (void)owner; }
static void on_wait_done(void *owner, kd_waiter *w)
{
	(void)owner;
	free(w);
}
static const kd_outbox_ops ops = {.changed = on_changed, .wait_done = on_wait_done};

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* Collects every outcome the outbox holds. */
static void collect(fixture *f)
{
	kd_run runs[64];
	uint32_t n;
	while ((n = outbox_take(f->ob, UINT64_MAX, runs, 64)) > 0) {
		for (uint32_t i = 0; i < n; i++) {
			for (uint32_t k = 0; k < runs[i].count; k++) {
				uint64_t seq = runs[i].seq + k;
				ck_assert_uint_ge(seq, 1);
				ck_assert_uint_le(seq, f->cap);
				f->partition[seq - 1] = runs[i].partition;
				f->err[seq - 1] = runs[i].err;
				f->outcomes++;
			}
		}
	}
}

static void spin(fixture *f, int ms)
{
	for (int i = 0; i < ms; i++) {
		uv_run(&f->loop, UV_RUN_NOWAIT);
		producers_notify(f->p);
		collect(f);
		sleep_ms(1);
	}
}

/* Runs the loop until every message sent so far has an outcome. */
static void settle(fixture *f, int timeout_ms)
{
	for (int waited = 0; f->outcomes < f->next_seq - 1; waited += 10) {
		ck_assert_msg(waited < timeout_ms, "%llu of %llu outcomes after %d ms",
			      (unsigned long long)f->outcomes, (unsigned long long)(f->next_seq - 1), timeout_ms);
		spin(f, 10);
	}
}

static void setup(fixture *f, const char *extra_props, uint64_t cap)
{
	memset(f, 0, sizeof(*f));
	ck_assert_int_eq(uv_loop_init(&f->loop), 0);
	config_defaults(&f->cfg);
	char text[1024], err[512];
	snprintf(text, sizeof(text),
		 "[cluster main]\nbootstrap.servers = mock\nlinger.ms = 1\nmessage.timeout.ms = 4000\n%s\n",
		 extra_props);
	ck_assert_msg(config_load_string(&f->cfg, "test", text, err, sizeof(err)) == 0, "%s", err);
	f->p = producers_create(&f->loop, &f->cfg, err, sizeof(err));
	ck_assert_msg(f->p != NULL, "%s", err);
	f->c = producers_cluster(f->p, NULL, 0);
	ck_assert_ptr_nonnull(f->c);
	f->mock = rd_kafka_handle_mock_cluster(cluster_rk(f->c));
	ck_assert_ptr_nonnull(f->mock);
	ck_assert_int_eq(rd_kafka_mock_topic_create(f->mock, TOPIC, PARTITIONS, 1), 0);
	f->ob = outbox_create(f->p, 1, &ops, f);
	ck_assert_ptr_nonnull(f->ob);
	f->next_seq = 1;
	f->cap = cap;
	f->partition = calloc(cap, sizeof(*f->partition));
	f->err = calloc(cap, sizeof(*f->err));
	ck_assert(f->partition && f->err);
}

/* The topic handle, once its metadata snapshot shows `want` partitions. */
static void open_topic(fixture *f)
{
	f->t = cluster_topic(f->c, TOPIC, (uint32_t)strlen(TOPIC));
	ck_assert_ptr_nonnull(f->t);
	for (int waited = 0; topic_partition_count(f->t) == 0; waited += 10) {
		ck_assert_msg(waited < 10000, "no metadata snapshot after 10 s");
		spin(f, 10);
	}
	ck_assert_int_eq(topic_partition_count(f->t), PARTITIONS);
}

static void teardown(fixture *f)
{
	outbox_orphan(f->p, f->ob);
	producers_purge(f->p);
	producers_close_handles(f->p);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	producers_destroy(f->p);
	ck_assert_int_eq(uv_loop_close(&f->loop), 0);
	config_free(&f->cfg);
	free(f->partition);
	free(f->err);
}

/* One run of RUN unkeyed values in report mode; returns its first seq. */
static uint64_t send_run(fixture *f)
{
	static const char payload[] = "value";
	kd_value vals[RUN];
	for (int i = 0; i < RUN; i++)
		vals[i] = (kd_value){.ptr = payload, .len = sizeof(payload) - 1};
	uint64_t first = f->next_seq;
	ck_assert_uint_le(first + RUN - 1, f->cap);
	bool full;
	uint32_t took = producer_send_values(f->p, f->t, f->ob, KD_ACK_REPORT, 0, first, vals, RUN, &full);
	ck_assert_uint_eq(took, RUN);
	ck_assert(!full);
	f->next_seq += RUN;
	return first;
}

/* The partition every message of the run starting at first went to (fails
 * if they differ or any failed). */
static int32_t run_partition(const fixture *f, uint64_t first)
{
	int32_t p = f->partition[first - 1];
	for (uint64_t s = first; s < first + RUN; s++) {
		ck_assert_msg(f->err[s - 1] == 0, "seq %llu: %s", (unsigned long long)s,
			      rd_kafka_err2str((rd_kafka_resp_err_t)f->err[s - 1]));
		ck_assert_int_eq(f->partition[s - 1], p);
	}
	return p;
}

START_TEST(runs_avoid_leaderless_partitions)
{
	fixture f;
	setup(&f, "sticky.partitioning.linger.ms = 1", 40 * RUN);
	/* only partitions 1 and 4 keep a leader */
	for (int32_t i = 0; i < PARTITIONS; i++)
		if (i != 1 && i != 4)
			ck_assert_int_eq(rd_kafka_mock_partition_set_leader(f.mock, TOPIC, i, -1), 0);
	open_topic(&f);
	uint64_t firsts[40];
	for (int r = 0; r < 40; r++) {
		firsts[r] = send_run(&f);
		spin(&f, 3); /* past the 1 ms stickiness */
	}
	settle(&f, 15000);
	int used[PARTITIONS] = {0};
	for (int r = 0; r < 40; r++)
		used[run_partition(&f, firsts[r])]++;
	for (int32_t i = 0; i < PARTITIONS; i++)
		if (i != 1 && i != 4)
			ck_assert_msg(used[i] == 0, "%d runs went to leaderless partition %d", used[i], i);
	/* random among the two, 40 times: both get some */
	ck_assert_int_gt(used[1], 0);
	ck_assert_int_gt(used[4], 0);
	teardown(&f);
}
END_TEST

START_TEST(runs_stick_for_the_linger)
{
	fixture f;
	setup(&f, "sticky.partitioning.linger.ms = 600000", 10 * RUN);
	open_topic(&f);
	uint64_t firsts[10];
	for (int r = 0; r < 10; r++) {
		firsts[r] = send_run(&f);
		spin(&f, 2);
	}
	settle(&f, 15000);
	int32_t p0 = run_partition(&f, firsts[0]);
	ck_assert_int_ge(p0, 0);
	ck_assert_int_lt(p0, PARTITIONS);
	for (int r = 1; r < 10; r++)
		ck_assert_int_eq(run_partition(&f, firsts[r]), p0);
	teardown(&f);
}
END_TEST

START_TEST(no_stickiness_spreads_each_run)
{
	fixture f;
	setup(&f, "sticky.partitioning.linger.ms = 0", RUN);
	open_topic(&f);
	uint64_t first = send_run(&f);
	settle(&f, 15000);
	int used[PARTITIONS] = {0};
	for (uint64_t s = first; s < first + RUN; s++) {
		ck_assert_int_eq(f.err[s - 1], 0);
		ck_assert_int_ge(f.partition[s - 1], 0);
		ck_assert_int_lt(f.partition[s - 1], PARTITIONS);
		used[f.partition[s - 1]]++;
	}
	/* librdkafka's random partitioner per message: 200 messages on one
	 * partition of six would be a 6^-199 event */
	int distinct = 0;
	for (int i = 0; i < PARTITIONS; i++)
		distinct += used[i] > 0;
	ck_assert_int_gt(distinct, 1);
	teardown(&f);
}
END_TEST

START_TEST(a_partition_that_loses_its_leader_is_left)
{
	fixture f;
	setup(&f, "sticky.partitioning.linger.ms = 600000", 20 * RUN);
	open_topic(&f);
	uint64_t first = send_run(&f);
	settle(&f, 15000);
	int32_t p0 = run_partition(&f, first);
	/* the sticky partition loses its leader: what is sent to it meanwhile
	 * times out (message.timeout.ms 4 s), the failure makes the daemon fetch
	 * a new snapshot, and later runs go elsewhere */
	ck_assert_int_eq(rd_kafka_mock_partition_set_leader(f.mock, TOPIC, p0, -1), 0);
	int32_t later = p0;
	for (int r = 0; r < 18 && later == p0; r++) {
		uint64_t s = send_run(&f);
		settle(&f, 15000);
		if (f.err[s - 1] == 0)
			later = run_partition(&f, s);
		else
			spin(&f, 200);
	}
	ck_assert_int_ne(later, p0);
	teardown(&f);
}
END_TEST

static Suite *producer_suite(void)
{
	Suite *s = suite_create("producer");
	TCase *tc = tcase_create("unkeyed runs");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, runs_avoid_leaderless_partitions);
	tcase_add_test(tc, runs_stick_for_the_linger);
	tcase_add_test(tc, no_stickiness_spreads_each_run);
	tcase_add_test(tc, a_partition_that_loses_its_leader_is_left);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return tu_run_suite(producer_suite());
}
