#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

static atomic_int current_level = KD_LOG_INFO;

void log_set_level(int level) { atomic_store(&current_level, level); }
int log_get_level(void) { return atomic_load(&current_level); }

int log_level_parse(const char *name)
{
	static const struct { const char *name; int level; } names[] = {
		{"error", KD_LOG_ERROR}, {"warn", KD_LOG_WARN}, {"warning", KD_LOG_WARN},
		{"notice", KD_LOG_NOTICE}, {"info", KD_LOG_INFO}, {"debug", KD_LOG_DEBUG},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(names[i].name, name) == 0)
			return names[i].level;
	return -1;
}

void log_rdkafka(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	/* syslog levels both; librdkafka's 0..2 (emerg..crit) count as errors.
	 * FAIL lines repeat what the daemon's error callbacks already log. */
	if (strcmp(fac, "FAIL") == 0)
		level = KD_LOG_DEBUG;
	log_msg(level < KD_LOG_ERROR ? KD_LOG_ERROR : level, "librdkafka %s: %s: %s", rk ? rd_kafka_name(rk) : "-", fac,
		buf);
}

void log_msg(int level, const char *fmt, ...)
{
	if (level > atomic_load(&current_level))
		return;
	static const char *tags[] = {"", "", "", "error", "warn", "notice", "info", "debug"};
	char line[2048];
	size_t n = 0;
	if (getenv("JOURNAL_STREAM") != NULL) {
		n = (size_t)snprintf(line, sizeof(line), "<%d>", level);
	} else {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
		n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ kafkad %s: ",
				      ts.tv_nsec / 1000000L, tags[level & 7]);
	}
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	n += (size_t)m;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}
