/* Logging: one line per event on stderr. Under systemd (JOURNAL_STREAM set)
 * lines carry <N> priority prefixes so journald keeps the level. Safe to call
 * from any thread: each line is formatted first and written with one write(). */
#ifndef KAFKAD_LOG_H
#define KAFKAD_LOG_H

enum kd_log_level { KD_LOG_ERROR = 3, KD_LOG_WARN = 4, KD_LOG_NOTICE = 5, KD_LOG_INFO = 6, KD_LOG_DEBUG = 7 };

void log_set_level(int level);
int log_get_level(void);
/* Parses "error", "warn", "notice", "info", "debug"; returns -1 if unknown. */
int log_level_parse(const char *name);
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* librdkafka's log callback (rd_kafka_conf_set_log_cb; any librdkafka
 * thread): its lines in the daemon's format and level filter, tagged with
 * the client's name and facility. rk is a const rd_kafka_t *. */
struct rd_kafka_s;
void log_rdkafka(const struct rd_kafka_s *rk, int level, const char *fac, const char *buf);

#define log_error(...) log_msg(KD_LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(KD_LOG_WARN, __VA_ARGS__)
#define log_notice(...) log_msg(KD_LOG_NOTICE, __VA_ARGS__)
#define log_info(...) log_msg(KD_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(KD_LOG_DEBUG, __VA_ARGS__)

#endif
