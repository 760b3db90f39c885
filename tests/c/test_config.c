/* config: config_load_string on valid and broken files (every problem is
 * one line "FILE:LINE: key: message"), and `kafkad --check-config`. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "log.h"
#include "partitioner.h"
#include "testutil.h"

#ifndef KAFKAD_EXE
#error "KAFKAD_EXE must be defined (tests/c/meson.build)"
#endif

#define MINIMAL "[cluster main]\nbootstrap.servers = mock\n"

/* Loads text as "t.conf"; returns the rc, err filled. cfg freed. */
static int load(const char *text, char *err, size_t errlen)
{
	kd_config cfg;
	config_defaults(&cfg);
	err[0] = '\0';
	int rc = config_load_string(&cfg, "t.conf", text, err, errlen);
	config_free(&cfg);
	return rc;
}

/* The text must fail with one line starting "t.conf:LINE: " (line > 0) or
 * "t.conf: " (line 0), naming key (when not NULL) and containing what. */
static void expect_error(const char *text, int line, const char *key, const char *what)
{
	char err[1024];
	int rc = load(text, err, sizeof(err));
	ck_assert_msg(rc == -1, "accepted:\n%s", text);
	ck_assert_msg(err[0] != '\0', "no message for:\n%s", text);
	ck_assert_msg(strchr(err, '\n') == NULL, "message is more than one line: '%s'", err);
	char prefix[64];
	if (line > 0)
		snprintf(prefix, sizeof(prefix), "t.conf:%d: ", line);
	else
		snprintf(prefix, sizeof(prefix), "t.conf: ");
	ck_assert_msg(strncmp(err, prefix, strlen(prefix)) == 0, "'%s' does not start with '%s'", err, prefix);
	if (key) {
		char k[128];
		snprintf(k, sizeof(k), "%s%s: ", prefix, key);
		ck_assert_msg(strncmp(err, k, strlen(k)) == 0, "'%s' does not name the key as '%s'", err, k);
	}
	if (what)
		ck_assert_msg(strstr(err, what) != NULL, "'%s' does not say '%s'", err, what);
}

/* --- valid files -------------------------------------------------------------- */

START_TEST(defaults)
{
	kd_config cfg;
	config_defaults(&cfg);
	ck_assert_str_eq(cfg.socket_path, "/run/kafkad/kafkad.sock");
	ck_assert_uint_eq(cfg.socket_mode, 0660);
	ck_assert_ptr_null(cfg.socket_group);
	ck_assert_int_eq(cfg.log_level, KD_LOG_INFO);
	ck_assert_uint_eq(cfg.max_connections, 4096);
	ck_assert_uint_eq(cfg.max_frame, 16u << 20); /* SPEC 1: default 16 MiB */
	ck_assert_uint_eq(cfg.max_batch, 100000);
	ck_assert_uint_eq(cfg.max_pending, 262144);
	ck_assert_uint_eq(cfg.max_parked, 1024);          /* SPEC 5.1 */
	ck_assert_uint_eq(cfg.write_high_water, 8u << 20); /* SPEC 5.1 */
	ck_assert_uint_eq(cfg.shutdown_timeout_ms, 10000);
	ck_assert_ptr_null(cfg.default_cluster);
	ck_assert_ptr_null(cfg.clusters);
	config_free(&cfg);

	/* a minimal file keeps them and picks the only cluster as default */
	config_defaults(&cfg);
	char err[512];
	ck_assert_int_eq(config_load_string(&cfg, "t.conf", MINIMAL, err, sizeof(err)), 0);
	ck_assert_str_eq(cfg.socket_path, "/run/kafkad/kafkad.sock");
	ck_assert_uint_eq(cfg.max_frame, 16u << 20);
	ck_assert_str_eq(cfg.default_cluster, "main");
	ck_assert_ptr_nonnull(cfg.clusters);
	ck_assert_str_eq(cfg.clusters->name, "main");
	ck_assert_str_eq(cfg.clusters->bootstrap, "mock");
	ck_assert_ptr_null(cfg.clusters->props);
	ck_assert_ptr_null(cfg.clusters->topics);
	ck_assert_ptr_null(cfg.clusters->next);
	ck_assert_str_eq(cfg.path, "t.conf");
	config_free(&cfg);
}
END_TEST

static const char full_conf[] =
	"# a full configuration\n"                                  /* 1 */
	"[daemon]\n"                                                /* 2 */
	"socket = /tmp/kafkad-test.sock\n"                          /* 3 */
	"socket_mode = 0640\n"                                      /* 4 */
	"socket_group = kafkad\n"                                   /* 5 */
	"log_level = debug\n"                                       /* 6 */
	"max_connections = 100\n"                                   /* 7 */
	"max_frame = 1048576\n"                                     /* 8 */
	"max_batch = 500\n"                                         /* 9 */
	"max_pending = 5000\n"                                      /* 10 */
	"max_parked = 7\n"                                          /* 11 */
	"write_high_water = 65536\n"                                /* 12 */
	"shutdown_timeout_ms = 0\n"                                 /* 13 */
	"default_cluster = analytics\n"                             /* 14 */
	"\n"                                                        /* 15 */
	"; comments with ; too\n"                                   /* 16 */
	"[cluster main]\n"                                          /* 17 */
	"bootstrap.servers = k1:9092,k2:9092\n"                     /* 18 */
	"acks = all\n"                                              /* 19 */
	"enable.idempotence = true\n"                               /* 20 */
	"compression.type = lz4\n"                                  /* 21 */
	"partitioner = pykafka_hashing\n"                           /* 22 */
	"\n"                                                        /* 23 */
	"[cluster analytics]\n"                                     /* 24 */
	"bootstrap.servers = mock\n"                                /* 25 */
	"linger.ms = 50\n"                                          /* 26 */
	"\n"                                                        /* 27 */
	"[topic main:orders]\n"                                     /* 28 */
	"partitioner = murmur2\n"                                   /* 29 */
	"message.timeout.ms = 60000\n"                              /* 30 */
	"[topic main:events]\n"                                     /* 31 */
	"partitioner = fnv1a_random\n"                              /* 32 */
	"[topic analytics:orders]\n"                                /* 33 */
	"request.required.acks = 1\n"                               /* 34 */
	"[topic main:orders]\n"                                     /* 35: same topic again */
	"compression.codec = gzip\n";                               /* 36 */

START_TEST(full_valid_file)
{
	kd_config cfg;
	config_defaults(&cfg);
	char err[512] = "";
	ck_assert_msg(config_load_string(&cfg, "full.conf", full_conf, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(cfg.socket_path, "/tmp/kafkad-test.sock");
	ck_assert_uint_eq(cfg.socket_mode, 0640);
	ck_assert_str_eq(cfg.socket_group, "kafkad");
	ck_assert_int_eq(cfg.log_level, KD_LOG_DEBUG);
	ck_assert_uint_eq(cfg.max_connections, 100);
	ck_assert_uint_eq(cfg.max_frame, 1048576);
	ck_assert_uint_eq(cfg.max_batch, 500);
	ck_assert_uint_eq(cfg.max_pending, 5000);
	ck_assert_uint_eq(cfg.max_parked, 7);
	ck_assert_uint_eq(cfg.write_high_water, 65536);
	ck_assert_uint_eq(cfg.shutdown_timeout_ms, 0);
	ck_assert_str_eq(cfg.default_cluster, "analytics");

	/* clusters in file order */
	kd_cluster_conf *main_c = cfg.clusters;
	ck_assert_ptr_nonnull(main_c);
	ck_assert_str_eq(main_c->name, "main");
	ck_assert_str_eq(main_c->bootstrap, "k1:9092,k2:9092");
	static const struct {
		const char *k, *v;
		int line;
	} mp[] = {{"acks", "all", 19},
		  {"enable.idempotence", "true", 20},
		  {"compression.type", "lz4", 21},
		  {"partitioner", "pykafka_hashing", 22}};
	kd_prop *p = main_c->props;
	for (size_t i = 0; i < sizeof(mp) / sizeof(mp[0]); i++, p = p->next) {
		ck_assert_ptr_nonnull(p);
		ck_assert_str_eq(p->key, mp[i].k);
		ck_assert_str_eq(p->value, mp[i].v);
		ck_assert_int_eq(p->line, mp[i].line);
	}
	ck_assert_ptr_null(p); /* bootstrap.servers is not a prop */

	kd_cluster_conf *an = main_c->next;
	ck_assert_ptr_nonnull(an);
	ck_assert_str_eq(an->name, "analytics");
	ck_assert_str_eq(an->bootstrap, "mock");
	ck_assert_str_eq(an->props->key, "linger.ms");
	ck_assert_str_eq(an->props->value, "50");
	ck_assert_ptr_null(an->next);

	ck_assert_ptr_eq(config_cluster(&cfg, "analytics", 9), an);
	ck_assert_ptr_eq(config_cluster(&cfg, "mainx", 4), main_c); /* length-bounded */
	ck_assert_ptr_null(config_cluster(&cfg, "nope", 4));
	ck_assert_ptr_null(config_cluster(&cfg, "mai", 3));

	/* topics: one entry per topic, props merged in file order */
	kd_topic_conf *orders = config_topic(main_c, "orders");
	ck_assert_ptr_nonnull(orders);
	ck_assert_str_eq(orders->props->key, "partitioner");
	ck_assert_str_eq(orders->props->value, "murmur2");
	ck_assert_int_eq(orders->props->line, 29);
	ck_assert_str_eq(orders->props->next->key, "message.timeout.ms");
	ck_assert_str_eq(orders->props->next->next->key, "compression.codec");
	ck_assert_int_eq(orders->props->next->next->line, 36);
	ck_assert_ptr_null(orders->props->next->next->next);
	kd_topic_conf *events = config_topic(main_c, "events");
	ck_assert_ptr_nonnull(events);
	ck_assert_str_eq(events->props->value, "fnv1a_random");
	ck_assert_ptr_eq(main_c->topics, orders);
	ck_assert_ptr_eq(orders->next, events);
	ck_assert_ptr_null(events->next);
	ck_assert_ptr_nonnull(config_topic(an, "orders"));
	ck_assert_ptr_null(config_topic(an, "events"));
	config_free(&cfg);
	config_free(&cfg); /* idempotent: zeroed after the first call */
}
END_TEST

START_TEST(valid_variants)
{
	char err[512];
	/* key/value whitespace, inline comments, empty socket_group */
	ck_assert_msg(load("[daemon]\n  socket_group =\nlog_level=warn ; inline\n" MINIMAL, err, sizeof(err)) == 0, "%s",
		      err);
	/* every level name */
	static const char *levels[] = {"error", "warn", "notice", "info", "debug"};
	for (size_t i = 0; i < 5; i++) {
		char text[256];
		snprintf(text, sizeof(text), "[daemon]\nlog_level = %s\n" MINIMAL, levels[i]);
		ck_assert_msg(load(text, err, sizeof(err)) == 0, "%s: %s", levels[i], err);
	}
	/* range ends */
	ck_assert_msg(load("[daemon]\nmax_frame = 1024\nmax_connections = 1000000\nshutdown_timeout_ms = 3600000\n"
			   "write_high_water = 1073741824\nsocket_mode = 0777\nmax_batch = 1\n" MINIMAL,
			   err, sizeof(err)) == 0,
		      "%s", err);
	/* max_batch == max_pending is fine */
	ck_assert_msg(load("[daemon]\nmax_batch = 10\nmax_pending = 10\n" MINIMAL, err, sizeof(err)) == 0, "%s", err);
	/* the cluster section before [daemon], and a file without a final newline */
	ck_assert_msg(load(MINIMAL "[daemon]\nmax_parked = 3", err, sizeof(err)) == 0, "%s", err);
	/* every partitioner name in a topic section */
	static const char *parts[] = {"random",         "consistent", "consistent_random", "murmur2",
				      "murmur2_random", "fnv1a",      "fnv1a_random",      "pykafka_hashing"};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
		char text[256];
		snprintf(text, sizeof(text), MINIMAL "[topic main:t-1.x_y]\npartitioner = %s\n", parts[i]);
		ck_assert_msg(load(text, err, sizeof(err)) == 0, "%s: %s", parts[i], err);
	}
	/* config_load from a real file */
	char path[] = "/tmp/kafkad-test-config-XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, full_conf, strlen(full_conf)), (ssize_t)strlen(full_conf));
	close(fd);
	kd_config cfg;
	config_defaults(&cfg);
	ck_assert_msg(config_load(&cfg, path, err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(cfg.path, path);
	ck_assert_str_eq(cfg.default_cluster, "analytics");
	ck_assert_int_eq(config_topic(cfg.clusters, "orders")->props->next->next->line, 36);
	config_free(&cfg);
	unlink(path);
}
END_TEST

/* --- errors ------------------------------------------------------------------------ */

START_TEST(err_unknown_daemon_key)
{
	expect_error("[daemon]\nsocket = /tmp/x.sock\nbogus = 1\n" MINIMAL, 3, "bogus", "unknown key in [daemon]");
	/* a cluster's librdkafka key is not a daemon key */
	expect_error(MINIMAL "[daemon]\nlinger.ms = 5\n", 4, "linger.ms", "unknown key");
}
END_TEST

START_TEST(err_unknown_section)
{
	expect_error(MINIMAL "\n[deamon]\nsocket = /tmp/x.sock\n", 5, NULL, "unknown section [deamon]");
	expect_error("[clusters main]\nbootstrap.servers = mock\n", 2, NULL, "unknown section");
	/* bad cluster and topic section names */
	expect_error("[cluster bad/name]\nbootstrap.servers = mock\n", 2, NULL, "cluster name");
	expect_error(MINIMAL "[topic events]\nacks = 1\n", 4, NULL, "expected [topic CLUSTER:TOPIC]");
	expect_error(MINIMAL "[topic main:]\nacks = 1\n", 4, NULL, "expected [topic CLUSTER:TOPIC]");
	expect_error(MINIMAL "[topic :events]\nacks = 1\n", 4, NULL, "expected [topic CLUSTER:TOPIC]");
}
END_TEST

START_TEST(err_bad_number)
{
	expect_error("[daemon]\nmax_frame = abc\n" MINIMAL, 2, "max_frame", "not a number");
	expect_error("[daemon]\nmax_batch = -1\n" MINIMAL, 2, "max_batch", "not a number");
	expect_error("[daemon]\nmax_batch = 10x\n" MINIMAL, 2, "max_batch", "not a number");
	expect_error("[daemon]\nmax_batch = 0x10\n" MINIMAL, 2, "max_batch", "not a number");
	expect_error("[daemon]\nmax_batch =\n" MINIMAL, 2, "max_batch", "not a number");
	expect_error("[daemon]\nmax_connections = 99999999999999999999999\n" MINIMAL, 2, "max_connections",
		     "not a number");
	expect_error("[daemon]\nsocket_mode = 0999\n" MINIMAL, 2, "socket_mode", "not a number");
}
END_TEST

START_TEST(err_out_of_range)
{
	expect_error("[daemon]\nmax_frame = 1023\n" MINIMAL, 2, "max_frame", "out of range");
	expect_error("[daemon]\nmax_frame = 268435457\n" MINIMAL, 2, "max_frame", "out of range");
	expect_error("[daemon]\nmax_frame = 4294967296\n" MINIMAL, 2, "max_frame", "out of range");
	expect_error("[daemon]\nmax_connections = 0\n" MINIMAL, 2, "max_connections", "out of range");
	expect_error("[daemon]\nmax_batch = 0\n" MINIMAL, 2, "max_batch", "out of range");
	expect_error("[daemon]\nmax_parked = 0\n" MINIMAL, 2, "max_parked", "out of range");
	expect_error("[daemon]\nwrite_high_water = 65535\n" MINIMAL, 2, "write_high_water", "out of range");
	expect_error("[daemon]\nshutdown_timeout_ms = 3600001\n" MINIMAL, 2, "shutdown_timeout_ms", "out of range");
	expect_error("[daemon]\nsocket_mode = 01000\n" MINIMAL, 2, "socket_mode", "out of range");
	/* other bad values of daemon keys */
	expect_error("[daemon]\nlog_level = loud\n" MINIMAL, 2, "log_level", "unknown level");
	char text[512];
	snprintf(text, sizeof(text), "[daemon]\nsocket = /%0120d\n" MINIMAL, 0);
	expect_error(text, 2, "socket", "1..107");
	/* a cross-key rule */
	expect_error("[daemon]\nmax_batch = 11\nmax_pending = 10\n" MINIMAL, 0, "max_batch", "max_pending");
}
END_TEST

START_TEST(err_unknown_rdkafka_property)
{
	expect_error(MINIMAL "lingr.ms = 5\n", 3, "lingr.ms", "lingr.ms");
	expect_error(MINIMAL "[topic main:events]\nno.such.topic.prop = 1\n", 4, "no.such.topic.prop", NULL);
	/* a global-only property in a topic section */
	expect_error(MINIMAL "[topic main:events]\nbootstrap.servers = x:1\n", 4, "bootstrap.servers", NULL);
}
END_TEST

START_TEST(err_bad_rdkafka_value)
{
	expect_error(MINIMAL "linger.ms = soon\n", 3, "linger.ms", NULL);
	expect_error(MINIMAL "compression.type = zip\n", 3, "compression.type", NULL);
	expect_error(MINIMAL "enable.idempotence = maybe\n", 3, "enable.idempotence", NULL);
	expect_error(MINIMAL "[topic main:events]\nmessage.timeout.ms = -5\n", 4, "message.timeout.ms", NULL);
}
END_TEST

START_TEST(err_topic_for_undefined_cluster)
{
	expect_error(MINIMAL "[topic other:events]\nacks = 1\n", 4, NULL, "cluster 'other' is not defined");
	/* "above": a cluster defined later does not count */
	expect_error("[topic late:events]\nacks = 1\n[cluster late]\nbootstrap.servers = mock\n", 2, NULL,
		     "cluster 'late' is not defined");
}
END_TEST

START_TEST(err_missing_bootstrap)
{
	/* named at the section header's line (config.h: kd_cluster_conf.line is
	 * "line of the section header") */
	expect_error(MINIMAL "\n[cluster second]\n# no servers\nlinger.ms = 5\n", 4, "bootstrap.servers",
		     "[cluster second]");
	expect_error("[cluster main]\nbootstrap.servers =\n", 2, "bootstrap.servers", "must not be empty");
}
END_TEST

START_TEST(err_bad_partitioner)
{
	expect_error(MINIMAL "[topic main:events]\npartitioner = sha1\n", 4, "partitioner", "unknown partitioner 'sha1'");
	expect_error(MINIMAL "partitioner = default\n", 3, "partitioner", "unknown partitioner");
	/* the message lists the valid names */
	expect_error(MINIMAL "partitioner = x\n", 3, "partitioner", partitioner_names());
}
END_TEST

START_TEST(err_default_cluster_unknown)
{
	/* line 2 is where default_cluster is set */
	expect_error("[daemon]\ndefault_cluster = nope\n" MINIMAL, 2, "default_cluster", "nope");
}
END_TEST

START_TEST(err_no_cluster)
{
	expect_error("", 0, NULL, "no [cluster NAME] section");
	expect_error("[daemon]\nsocket = /tmp/x.sock\n", 0, NULL, "no [cluster NAME] section");
	expect_error("# only comments\n\n", 0, NULL, "no [cluster NAME] section");
}
END_TEST

START_TEST(err_syntax)
{
	expect_error("[daemon]\nthis line has no equals sign\n" MINIMAL, 2, NULL, "syntax error");
	expect_error(MINIMAL "[unterminated\n", 3, NULL, "syntax error");
	expect_error("\n\n\nnot a key\n", 4, NULL, "syntax error");
}
END_TEST

START_TEST(err_first_problem_wins)
{
	/* two problems: the first one (line 2) is reported */
	expect_error("[daemon]\nmax_frame = 1\nbogus = 2\n" MINIMAL, 2, "max_frame", "out of range");
	/* a syntax error on line 2, then a bad key on line 3 */
	expect_error("[daemon]\nnot a key\nbogus = 2\n" MINIMAL, 2, NULL, "syntax error");
}
END_TEST

START_TEST(err_message_truncated_safely)
{
	/* a tiny buffer: still NUL-terminated, no overflow (ASan watches) */
	kd_config cfg;
	config_defaults(&cfg);
	char err[8];
	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(config_load_string(&cfg, "t.conf", "[daemon]\nbogus = 1\n", err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(memchr(err, '\0', sizeof(err)));
	config_free(&cfg);
	/* a missing file */
	config_defaults(&cfg);
	char err2[512];
	ck_assert_int_eq(config_load(&cfg, "/nonexistent/kafkad.conf", err2, sizeof(err2)), -1);
	ck_assert_ptr_nonnull(strstr(err2, "/nonexistent/kafkad.conf: cannot open"));
	config_free(&cfg);
}
END_TEST

/* --- kafkad --check-config ------------------------------------------------------------ */

static char *read_all(int fd)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	ck_assert_ptr_nonnull(buf);
	for (;;) {
		if (len + 1 >= cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return buf;
}

/* Runs kafkad with args; returns its exit status and its output. */
static int run_kafkad(const char *const *args, char **out, char **err)
{
	char tmpl_out[] = "/tmp/kafkad-test-out-XXXXXX", tmpl_err[] = "/tmp/kafkad-test-err-XXXXXX";
	int fo = mkstemp(tmpl_out), fe = mkstemp(tmpl_err);
	ck_assert(fo >= 0 && fe >= 0);
	unlink(tmpl_out);
	unlink(tmpl_err);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		dup2(fo, 1);
		dup2(fe, 2);
		const char *argv[16] = {KAFKAD_EXE};
		int i = 1;
		for (; args[i - 1] && i < 15; i++)
			argv[i] = args[i - 1];
		argv[i] = NULL;
		execv(KAFKAD_EXE, (char *const *)argv);
		_exit(127);
	}
	int st;
	while (waitpid(pid, &st, 0) < 0)
		ck_assert_int_eq(errno, EINTR);
	lseek(fo, 0, SEEK_SET);
	lseek(fe, 0, SEEK_SET);
	*out = read_all(fo);
	*err = read_all(fe);
	close(fo);
	close(fe);
	ck_assert_msg(WIFEXITED(st), "kafkad did not exit normally (status %d); stderr: %s", st, *err);
	return WEXITSTATUS(st);
}

static char *write_temp(const char *text)
{
	char *path = strdup("/tmp/kafkad-test-conf-XXXXXX");
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

START_TEST(check_config_ok)
{
	char *path = write_temp("[daemon]\nsocket = /tmp/kafkad-check.sock\n" MINIMAL "[cluster b]\nbootstrap.servers = mock\n");
	char *out, *err;
	const char *args[] = {"--check-config", "-c", path, NULL};
	int rc = run_kafkad(args, &out, &err);
	ck_assert_msg(rc == 0, "exit %d; stderr: %s", rc, err);
	char want[512];
	snprintf(want, sizeof(want), "%s: OK (2 clusters, socket /tmp/kafkad-check.sock)\n", path);
	ck_assert_str_eq(out, want);
	ck_assert_msg(err[0] == '\0', "stderr: %s", err);
	free(out);
	free(err);
	/* long option form, one cluster */
	unlink(path);
	free(path);
	path = write_temp(MINIMAL);
	const char *args2[] = {"--config", path, "--check-config", NULL};
	rc = run_kafkad(args2, &out, &err);
	ck_assert_msg(rc == 0, "exit %d; stderr: %s", rc, err);
	ck_assert_ptr_nonnull(strstr(out, ": OK (1 cluster, socket /run/kafkad/kafkad.sock)\n"));
	ck_assert_int_eq(count_lines(out), 1);
	free(out);
	free(err);
	unlink(path);
	free(path);
}
END_TEST

START_TEST(check_config_error)
{
	char *path = write_temp("[daemon]\nmax_frame = 12\n" MINIMAL);
	char *out, *err;
	const char *args[] = {"--check-config", "-c", path, NULL};
	int rc = run_kafkad(args, &out, &err);
	ck_assert_int_eq(rc, 1);
	char want[512];
	snprintf(want, sizeof(want), "kafkad: %s:2: max_frame: ", path);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "stderr '%s' does not start with '%s'", err, want);
	ck_assert_msg(count_lines(err) == 1, "stderr is not one line: '%s'", err);
	ck_assert_str_eq(out, "");
	free(out);
	free(err);
	unlink(path);
	free(path);

	/* a missing file is one line too */
	const char *args2[] = {"--check-config", "-c", "/nonexistent/kafkad.conf", NULL};
	rc = run_kafkad(args2, &out, &err);
	ck_assert_int_eq(rc, 1);
	const char *want_open = "kafkad: /nonexistent/kafkad.conf: cannot open: ";
	ck_assert_msg(strncmp(err, want_open, strlen(want_open)) == 0, "stderr: %s", err);
	ck_assert_int_eq(count_lines(err), 1);
	free(out);
	free(err);

	/* a bad librdkafka property through the binary */
	path = write_temp(MINIMAL "batch.num.messages = lots\n");
	const char *args3[] = {"--check-config", "-c", path, NULL};
	rc = run_kafkad(args3, &out, &err);
	ck_assert_int_eq(rc, 1);
	snprintf(want, sizeof(want), "kafkad: %s:3: batch.num.messages: ", path);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "stderr '%s' does not start with '%s'", err, want);
	ck_assert_int_eq(count_lines(err), 1);
	free(out);
	free(err);
	unlink(path);
	free(path);

	/* usage errors exit 2 */
	const char *args4[] = {"--no-such-option", NULL};
	rc = run_kafkad(args4, &out, &err);
	ck_assert_int_eq(rc, 2);
	free(out);
	free(err);
}
END_TEST

/* Declared consumers: Kafka-coordinated and ZooKeeper-balanced members. */
START_TEST(declared_consumers)
{
	kd_config cfg;
	config_defaults(&cfg);
	char err[1024] = "";
	const char *text = MINIMAL "[consumer audit]\ngroup = a\ntopics = t2, t1\n"
				   "[consumer legacy]\nmode = zookeeper\nzookeeper_connect = 127.0.0.1:2181/kafka\n"
				   "group = clicks\ntopics = clicks\nassignor = roundrobin\n"
				   "zookeeper_owners_layout = topic\nzookeeper_session_timeout_ms = 4000\n"
				   "rebalance_backoff_ms = 0\n";
	ck_assert_msg(config_load_string(&cfg, "t.conf", text, err, sizeof(err)) == 0, "%s", err);
	const kd_consumer_conf *k = cfg.consumers;
	ck_assert_ptr_nonnull(k);
	ck_assert_str_eq(k->name, "audit");
	ck_assert(!k->zookeeper);
	ck_assert_uint_eq(k->n_topics, 2);
	ck_assert_str_eq(k->topics[0], "t1"); /* sorted */
	k = k->next;
	ck_assert_ptr_nonnull(k);
	ck_assert(k->zookeeper);
	ck_assert_str_eq(k->zookeeper_connect, "127.0.0.1:2181/kafka");
	ck_assert(k->zk_topic_layout);
	ck_assert_uint_eq(k->zookeeper_session_timeout_ms, 4000);
	ck_assert_str_eq(k->assignor, "roundrobin");
	ck_assert_ptr_null(k->next);
	config_free(&cfg);
}
END_TEST

START_TEST(err_declared_consumers)
{
	expect_error(MINIMAL "[consumer x]\nmode = simple\n", 4, "mode", "'group' or 'zookeeper'");
	expect_error(MINIMAL "[consumer x]\nmode = zookeeper\ngroup = g\ntopics = t\n", 3, "zookeeper_connect",
		     "missing");
	expect_error(MINIMAL "[consumer x]\nmode = zookeeper\nzookeeper_connect = h:1\ngroup = g\ntopics = a,b\n", 3,
		     "topics", "exactly one topic");
	expect_error(MINIMAL "[consumer x]\nmode = zookeeper\nzookeeper_connect = h:1\ngroup = g\ntopics = a\n"
			     "assignor = cooperative-sticky\n",
		     3, "assignor", "range or roundrobin");
	expect_error(MINIMAL "[consumer x]\nzookeeper_connect = h:1\ngroup = g\ntopics = a\n", 3, "zookeeper_connect",
		     "mode = zookeeper");
	expect_error(MINIMAL "[consumer x]\nmode = zookeeper\nzookeeper_owners_layout = flat\n", 5,
		     "zookeeper_owners_layout", "pykafka-py3 or topic");
	expect_error(MINIMAL "[consumer x]\nzookeeper_session_timeout_ms = 10\n", 4, "zookeeper_session_timeout_ms",
		     NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("valid");
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, full_valid_file);
	tcase_add_test(tc, valid_variants);
	tcase_add_test(tc, declared_consumers);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, err_unknown_daemon_key);
	tcase_add_test(tc, err_unknown_section);
	tcase_add_test(tc, err_bad_number);
	tcase_add_test(tc, err_out_of_range);
	tcase_add_test(tc, err_unknown_rdkafka_property);
	tcase_add_test(tc, err_bad_rdkafka_value);
	tcase_add_test(tc, err_topic_for_undefined_cluster);
	tcase_add_test(tc, err_missing_bootstrap);
	tcase_add_test(tc, err_bad_partitioner);
	tcase_add_test(tc, err_default_cluster_unknown);
	tcase_add_test(tc, err_no_cluster);
	tcase_add_test(tc, err_syntax);
	tcase_add_test(tc, err_first_problem_wins);
	tcase_add_test(tc, err_message_truncated_safely);
	tcase_add_test(tc, err_declared_consumers);
	suite_add_tcase(s, tc);

	tc = tcase_create("check-config");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, check_config_ok);
	tcase_add_test(tc, check_config_error);
	suite_add_tcase(s, tc);

	return tu_run_suite(s);
}
