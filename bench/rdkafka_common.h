/* What the two librdkafka contenders (rdkafka_produce.c, rdkafka_consume.c)
 * share: dying with a message, the clocks (wall, own CPU, other processes'
 * CPU, the machine's busy CPU), the KB_WATCH_PIDS list of processes to
 * watch, and creating the rd_kafka_t from fixed properties plus key=value
 * arguments.  Static inline, included by each program: the build lines stay
 * one .c file each.
 *
 * Define BENCH_PROG (the program's name, for error messages) before
 * including this header.
 */
#ifndef KAFKAD_BENCH_RDKAFKA_COMMON_H
#define KAFKAD_BENCH_RDKAFKA_COMMON_H

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#ifndef BENCH_PROG
#error "define BENCH_PROG before including rdkafka_common.h"
#endif

#define MAX_WATCH 8

static inline void die(const char *what, const char *why)
{
	fprintf(stderr, BENCH_PROG ": %s: %s\n", what, why);
	exit(1);
}

static inline double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU of this process, every thread (librdkafka's included). */
static inline double self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
	       (double)ru.ru_stime.tv_usec / 1e6;
}

/* utime+stime of a process in seconds (/proc/PID/stat fields 14 and 15), -1 if gone. */
static inline double proc_cpu_s(long pid)
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
	char *save = NULL;
	for (char *tok = strtok_r(p + 1, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
		field++;
		if (field == 14) {
			ut = strtoull(tok, NULL, 10);
		} else if (field == 15) {
			st = strtoull(tok, NULL, 10);
			break;
		}
	}
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* CPU seconds all CPUs were busy (/proc/stat "cpu" line minus idle and iowait). */
static inline double system_busy_s(void)
{
	unsigned long long v[8] = {0};
	FILE *f = fopen("/proc/stat", "r");
	if (!f)
		return -1;
	int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
		       &v[6], &v[7]);
	fclose(f);
	if (n < 8)
		return -1;
	unsigned long long busy = 0;
	for (int i = 0; i < 8; i++)
		if (i != 3 && i != 4)
			busy += v[i];
	return (double)busy / (double)sysconf(_SC_CLK_TCK);
}

/* The processes named in KB_WATCH_PIDS="name:pid,...", at most MAX_WATCH. */
static char watch_name[MAX_WATCH][32];
static long watch_pid[MAX_WATCH];
static int n_watches;

static inline void parse_watches(void)
{
	const char *env = getenv("KB_WATCH_PIDS");
	if (!env)
		return;
	char *copy = strdup(env);
	if (!copy)
		die("KB_WATCH_PIDS", "out of memory");
	char *save = NULL;
	for (char *item = strtok_r(copy, ",", &save); item && n_watches < MAX_WATCH; item = strtok_r(NULL, ",", &save)) {
		char *colon = strchr(item, ':');
		if (!colon)
			continue;
		*colon = '\0';
		snprintf(watch_name[n_watches], sizeof(watch_name[0]), "%s", item);
		watch_pid[n_watches++] = atol(colon + 1);
	}
	free(copy);
}

/* A configuration holding the n_fixed {name, value} pairs, then the
 * key=value arguments argv[first..argc-1] (librdkafka properties: later
 * ones override earlier ones); dies on an unknown property or a bad value. */
static inline rd_kafka_conf_t *new_conf(const char *const (*fixed)[2], size_t n_fixed, int first, int argc,
					char **argv)
{
	char errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	for (size_t i = 0; i < n_fixed; i++)
		if (rd_kafka_conf_set(conf, fixed[i][0], fixed[i][1], errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
			die(fixed[i][0], errstr);
	for (int i = first; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq)
			die(argv[i], "expected key=value");
		*eq = '\0';
		if (rd_kafka_conf_set(conf, argv[i], eq + 1, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
			die(argv[i], errstr);
	}
	return conf;
}

/* rd_kafka_new() that dies on failure; takes conf over. */
static inline rd_kafka_t *new_handle(rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
	char errstr[512];
	rd_kafka_t *rk = rd_kafka_new(type, conf, errstr, sizeof(errstr));
	if (!rk)
		die("rd_kafka_new", errstr);
	return rk;
}

#endif
