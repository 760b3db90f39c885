/* dispatch: (1) conformance of the op table with protocol/ops.json and
 * protocol/SPEC.md; (2) end to end against the real daemon binary on
 * librdkafka's mock cluster, speaking the protocol over its Unix socket.
 *
 * Every end-to-end test starts its own daemon (a checked fixture, in the
 * forked test process) and its teardown stops it with SIGTERM, asserting it
 * exits 0 within a few seconds. The daemon gets PR_SET_PDEATHSIG so a test
 * that fails or times out does not leave it behind. */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"
#include "dispatch.h"
#include "errors.h"
#include "partitioner.h"
#include "testutil.h"

#ifndef KAFKAD_EXE
#error "KAFKAD_EXE must be defined (tests/c/meson.build)"
#endif
#ifndef PROTOCOL_DIR
#error "PROTOCOL_DIR must be defined (tests/c/meson.build)"
#endif

#define RECV_TIMEOUT_S 20

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* ===================================================================== */
/* (1) conformance                                                        */
/* ===================================================================== */

static json_t *load_ops_json(void)
{
	json_error_t jerr;
	json_t *doc = json_load_file(PROTOCOL_DIR "/ops.json", JSON_PRESERVE_ORDER, &jerr);
	ck_assert_msg(doc != NULL, "ops.json:%d: %s", jerr.line, jerr.text);
	ck_assert_msg(json_is_object(json_object_get(doc, "ops")), "ops.json has no \"ops\" object");
	return doc;
}

START_TEST(ops_json_matches_op_table)
{
	json_t *doc = load_ops_json();
	json_t *ops = json_object_get(doc, "ops");
	const char *name;
	json_t *v;
	json_object_foreach(ops, name, v) {
		const kd_op *op = dispatch_find(name, (uint32_t)strlen(name));
		ck_assert_msg(op != NULL, "op '%s' is in protocol/ops.json but has no handler in dispatch_ops()", name);
		ck_assert_msg(op->handler != NULL, "op '%s' has a NULL handler", name);
		ck_assert_msg(json_is_object(json_object_get(v, "args")) && json_is_object(json_object_get(v, "result")),
			      "ops.json: op '%s' lacks its args/result maps", name);
	}
	size_t n = 0;
	for (const kd_op *op = dispatch_ops(); op->name; op++, n++) {
		ck_assert_msg(json_object_get(ops, op->name) != NULL,
			      "op '%s' has a handler in dispatch_ops() but is not in protocol/ops.json", op->name);
		ck_assert_msg(op->handler != NULL, "op '%s' has a NULL handler", op->name);
		for (const kd_op *o2 = op + 1; o2->name; o2++)
			ck_assert_msg(strcmp(op->name, o2->name) != 0, "op '%s' is in the table twice", op->name);
		ck_assert_ptr_eq(dispatch_find(op->name, (uint32_t)strlen(op->name)), op);
	}
	ck_assert_uint_eq(n, json_object_size(ops));
	ck_assert_ptr_null(dispatch_find("nope", 4));
	ck_assert_ptr_null(dispatch_find("pin", 3));
	ck_assert_ptr_null(dispatch_find("pingg", 5));
	ck_assert_ptr_null(dispatch_find("", 0));
	json_decref(doc);
}
END_TEST

static char *read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	ck_assert_msg(f != NULL, "cannot open %s", path);
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *buf = malloc((size_t)n + 1);
	ck_assert_ptr_nonnull(buf);
	ck_assert_uint_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* If line is "### 4.<digits> `name`", copies name into out. */
static bool spec_op_heading(const char *line, size_t len, char *out, size_t outlen)
{
	if (len < 8 || strncmp(line, "### 4.", 6) != 0)
		return false;
	size_t i = 6;
	if (!(line[i] >= '0' && line[i] <= '9'))
		return false;
	while (i < len && line[i] >= '0' && line[i] <= '9')
		i++;
	if (i + 2 >= len || line[i] != ' ' || line[i + 1] != '`')
		return false;
	i += 2;
	const char *end = memchr(line + i, '`', len - i);
	if (!end || (size_t)(end - line) + 1 != len || (size_t)(end - (line + i)) >= outlen)
		return false;
	memcpy(out, line + i, (size_t)(end - (line + i)));
	out[end - (line + i)] = '\0';
	return true;
}

START_TEST(spec_has_a_section_per_op)
{
	json_t *doc = load_ops_json();
	json_t *ops = json_object_get(doc, "ops");
	char *spec = read_file(PROTOCOL_DIR "/SPEC.md");
	json_t *found = json_object();
	for (char *line = spec; *line;) {
		char *nl = strchr(line, '\n');
		size_t len = nl ? (size_t)(nl - line) : strlen(line);
		char name[64];
		if (spec_op_heading(line, len, name, sizeof(name))) {
			ck_assert_msg(json_object_get(ops, name) != NULL,
				      "SPEC.md has a section for op '%s' that is not in protocol/ops.json", name);
			ck_assert_msg(json_object_get(found, name) == NULL, "SPEC.md has two sections for op '%s'", name);
			json_object_set_new(found, name, json_true());
		}
		line += len + (nl ? 1 : 0);
	}
	const char *name;
	json_t *v;
	json_object_foreach(ops, name, v) {
		ck_assert_msg(json_object_get(found, name) != NULL,
			      "op '%s' has no \"### 4.x `%s`\" section in protocol/SPEC.md", name, name);
	}
	json_decref(found);
	free(spec);
	json_decref(doc);
}
END_TEST

START_TEST(error_codes_match_ops_json_and_spec)
{
	json_t *doc = load_ops_json();
	json_t *errs = json_object_get(doc, "errors");
	ck_assert(json_is_object(errs));
	const char *name;
	json_t *v;
	json_object_foreach(errs, name, v) {
		int code = (int)json_integer_value(v);
		ck_assert_msg(kd_err_name(code) && strcmp(kd_err_name(code), name) == 0,
			      "ops.json says %s = %d, errors.c names %d '%s'", name, code, code,
			      kd_err_name(code) ? kd_err_name(code) : "(none)");
	}
	for (int c = 1; c < KD_ERR_MAX_DAEMON; c++) {
		ck_assert_msg(kd_err_name(c) != NULL, "daemon code %d has no name", c);
		ck_assert_msg(json_object_get(errs, kd_err_name(c)) != NULL, "%s (%d) is not in ops.json", kd_err_name(c), c);
	}
	ck_assert_ptr_null(kd_err_name(0));
	ck_assert_ptr_null(kd_err_name(KD_ERR_MAX_DAEMON));
	ck_assert_ptr_null(kd_err_name(-1));
	ck_assert_int_eq(json_integer_value(json_object_get(doc, "kafka_error_base")), KD_ERR_KAFKA_BASE);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(doc, "framing"), "default_max_frame")),
			 16 << 20);

	/* SPEC 3's table: "| code | NAME | meaning |", retriable when the
	 * meaning says so */
	char *spec = read_file(PROTOCOL_DIR "/SPEC.md");
	bool in_spec[KD_ERR_MAX_DAEMON] = {false};
	for (char *line = strtok(spec, "\n"); line; line = strtok(NULL, "\n")) {
		int code, n = 0;
		char ename[64];
		if (sscanf(line, "| %d | %63[A-Z_] |%n", &code, ename, &n) != 2 || n == 0)
			continue;
		ck_assert_msg(code > 0 && code < KD_ERR_MAX_DAEMON, "SPEC.md lists code %d (%s) that errors.c lacks", code,
			      ename);
		ck_assert_msg(strcmp(kd_err_name(code), ename) == 0, "SPEC.md names %d %s, errors.c %s", code, ename,
			      kd_err_name(code));
		bool retriable = strstr(line + n, "(retriable") != NULL;
		ck_assert_msg(kd_err_retriable(code) == retriable, "%s: SPEC.md says retriable %d, errors.c %d", ename,
			      retriable, kd_err_retriable(code));
		in_spec[code] = true;
	}
	for (int c = 1; c < KD_ERR_MAX_DAEMON; c++)
		ck_assert_msg(in_spec[c], "%s (%d) is not in SPEC.md's error table", kd_err_name(c), c);
	free(spec);
	json_decref(doc);
}
END_TEST

/* ===================================================================== */
/* (2) end to end                                                         */
/* ===================================================================== */

/* Made by main(), removed when every test has run: a failed assertion
 * ends the forked test with _exit(), skipping its teardown. */
static char base_dir[32];

typedef struct daemon_proc {
	pid_t pid;
	char dir[96];
	char sock[128];
	char conf[128];
} daemon_proc;

static daemon_proc D;

static int try_connect(const char *path)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ck_assert_int_ge(fd, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

/* extra: more [daemon] keys ("key = value\n" lines), or "". */
static void daemon_start_with(daemon_proc *d, const char *extra)
{
	memset(d, 0, sizeof(*d));
	snprintf(d->dir, sizeof(d->dir), "%s/dXXXXXX", base_dir);
	ck_assert_ptr_nonnull(mkdtemp(d->dir));
	snprintf(d->sock, sizeof(d->sock), "%s/k.sock", d->dir);
	snprintf(d->conf, sizeof(d->conf), "%s/kafkad.conf", d->dir);
	FILE *f = fopen(d->conf, "w");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "[daemon]\nsocket = %s\n%s[cluster main]\nbootstrap.servers = mock\n", d->sock, extra);
	fclose(f);
	pid_t parent = getpid();
	d->pid = fork();
	ck_assert_int_ge(d->pid, 0);
	if (d->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		/* In ASan builds, let a failed huge allocation return NULL as
		 * malloc does (msgpack-c then reports it and the daemon answers
		 * BAD_FRAME) instead of aborting: see e2e_fuzz_requests. */
		static char asan[1024];
		const char *prev = getenv("ASAN_OPTIONS");
		snprintf(asan, sizeof(asan), "%s%sallocator_may_return_null=1", prev ? prev : "", prev && *prev ? ":" : "");
		setenv("ASAN_OPTIONS", asan, 1);
		execl(KAFKAD_EXE, KAFKAD_EXE, "-c", d->conf, (char *)NULL);
		_exit(127);
	}
	double deadline = now_s() + 15;
	for (;;) {
		int fd = try_connect(d->sock);
		if (fd >= 0) {
			close(fd);
			return;
		}
		int st;
		pid_t r = waitpid(d->pid, &st, WNOHANG);
		ck_assert_msg(r == 0, "kafkad exited during startup (status %d)", st);
		ck_assert_msg(now_s() < deadline, "kafkad did not create %s within 15 s", d->sock);
		sleep_ms(10);
	}
}

static void daemon_start(daemon_proc *d) { daemon_start_with(d, ""); }

/* SIGTERM; returns the exit status; fails unless it exits within limit_s. */
static int daemon_stop(daemon_proc *d, double limit_s)
{
	ck_assert_int_gt(d->pid, 0);
	ck_assert_int_eq(kill(d->pid, SIGTERM), 0);
	double deadline = now_s() + limit_s;
	int st = 0;
	for (;;) {
		pid_t r = waitpid(d->pid, &st, WNOHANG);
		if (r == d->pid)
			break;
		if (now_s() > deadline) {
			kill(d->pid, SIGKILL);
			waitpid(d->pid, &st, 0);
			d->pid = 0;
			ck_abort_msg("kafkad did not exit within %.0f s of SIGTERM", limit_s);
		}
		sleep_ms(10);
	}
	d->pid = 0;
	return st;
}

static void daemon_cleanup_dir(daemon_proc *d)
{
	unlink(d->conf);
	unlink(d->sock);
	rmdir(d->dir);
	d->dir[0] = '\0';
}

static void e2e_setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	daemon_start(&D);
}

static void e2e_teardown(void)
{
	double t0 = now_s();
	int st = daemon_stop(&D, 10);
	double took = now_s() - t0;
	struct stat sb;
	bool sock_left = stat(D.sock, &sb) == 0;
	daemon_cleanup_dir(&D);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "kafkad exited with status 0x%x after SIGTERM", st);
	ck_assert_msg(took < 5, "kafkad took %.1f s to stop", took);
	ck_assert_msg(!sock_left, "kafkad left its socket behind");
}

/* --- client ------------------------------------------------------------- */

static int conn_open(void)
{
	int fd = try_connect(D.sock);
	ck_assert_msg(fd >= 0, "connect %s: %s", D.sock, strerror(errno));
	struct timeval tv = {.tv_sec = RECV_TIMEOUT_S};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static void send_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		ck_assert_msg(n > 0, "send: %s", strerror(errno));
		p += n;
		len -= (size_t)n;
	}
}

/* A request frame [id, op, args] with args given as JSON (NULL: nil). */
static char *request_frame(uint64_t id, const char *op, const char *args_json, size_t *len)
{
	kd_writer w;
	writer_init(&w);
	msgpack_pack_array(&w.pk, 3);
	msgpack_pack_uint64(&w.pk, id);
	pack_cstr(&w.pk, op);
	if (args_json) {
		json_t *args = tu_json(args_json);
		char err[256];
		ck_assert_msg(tu_pack_json(&w.pk, args, err, sizeof(err)), "%s", err);
		json_decref(args);
	} else {
		msgpack_pack_nil(&w.pk);
	}
	return writer_take(&w, len);
}

static void send_req(int fd, uint64_t id, const char *op, const char *args_json)
{
	size_t len;
	char *frame = request_frame(id, op, args_json, &len);
	send_all(fd, frame, len);
	free(frame);
}

/* Sends a frame whose payload is given in hex (length prefix added). */
static void send_payload_hex(int fd, const char *hex)
{
	char buf[4096];
	size_t n = tu_unhex(hex, buf + 4, sizeof(buf) - 4);
	buf[0] = (char)(n >> 24);
	buf[1] = (char)(n >> 16);
	buf[2] = (char)(n >> 8);
	buf[3] = (char)n;
	send_all(fd, buf, n + 4);
}

/* Reads exactly len bytes: 1, or 0 on EOF before the first byte. */
static int recv_exact(int fd, void *buf, size_t len)
{
	char *p = buf;
	size_t got = 0;
	while (got < len) {
		ssize_t n = recv(fd, p + got, len - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		ck_assert_msg(n >= 0, "recv: %s (no answer within %d s?)", strerror(errno), RECV_TIMEOUT_S);
		if (n == 0) {
			ck_assert_msg(got == 0, "EOF in the middle of a frame");
			return 0;
		}
		got += (size_t)n;
	}
	return 1;
}

/* Reads one frame and unpacks it into *o (in z, which the caller destroys
 * along with *buf). Returns false on EOF before the frame; a frame that is
 * not exactly one msgpack value fails the test. */
static bool recv_frame(int fd, char **buf, msgpack_zone *z, msgpack_object *o)
{
	uint8_t hdr[4];
	if (!recv_exact(fd, hdr, 4))
		return false;
	uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
	ck_assert_msg(n >= 1 && n <= (16u << 20), "daemon sent a frame of length %u", n);
	*buf = malloc(n);
	ck_assert_ptr_nonnull(*buf);
	ck_assert_msg(recv_exact(fd, *buf, n), "EOF inside a frame");
	msgpack_zone_init(z, 4096);
	size_t off = 0;
	ck_assert_msg(msgpack_unpack(*buf, n, &off, z, o) == MSGPACK_UNPACK_SUCCESS && off == n,
		      "daemon sent a frame that is not exactly one msgpack value");
	return true;
}

/* One frame from the daemon as JSON, or NULL on EOF. */
static json_t *recv_msg(int fd)
{
	char *buf;
	msgpack_zone z;
	msgpack_object o;
	if (!recv_frame(fd, &buf, &z, &o))
		return NULL;
	char err[256];
	json_t *j = tu_to_json(&o, err, sizeof(err));
	ck_assert_msg(j != NULL, "daemon response: %s", err);
	msgpack_zone_destroy(&z);
	free(buf);
	/* every response is [id|nil, error|nil, result] */
	ck_assert_msg(json_is_array(j) && json_array_size(j) == 3, "not a response envelope");
	json_t *e = json_array_get(j, 1);
	if (!json_is_null(e)) {
		ck_assert_msg(json_is_object(e) && json_object_size(e) == 4, "bad error map");
		json_t *code = json_object_get(e, "code"), *name = json_object_get(e, "name");
		ck_assert(json_is_integer(code) && json_is_string(name));
		ck_assert(json_is_string(json_object_get(e, "message")));
		ck_assert(json_is_boolean(json_object_get(e, "retriable")));
		int c = (int)json_integer_value(code);
		if (c < KD_ERR_KAFKA_BASE - 1000) {
			ck_assert_msg(kd_err_name(c) && strcmp(kd_err_name(c), json_string_value(name)) == 0,
				      "error code %d named %s", c, json_string_value(name));
		}
		ck_assert_msg(json_is_null(json_array_get(j, 2)), "error response with a result");
	}
	return j;
}

static void expect_id(json_t *resp, uint64_t id)
{
	json_t *jid = json_array_get(resp, 0);
	char *s = tu_dump(resp);
	ck_assert_msg(json_is_integer(jid) && (uint64_t)json_integer_value(jid) == id, "want id %llu: %s",
		      (unsigned long long)id, s);
	free(s);
}

/* Sends a request and reads its response (nothing else may be in flight). */
static json_t *rpc(int fd, uint64_t id, const char *op, const char *args_json)
{
	send_req(fd, id, op, args_json);
	json_t *resp = recv_msg(fd);
	ck_assert_msg(resp != NULL, "%s: connection closed instead of a response", op);
	expect_id(resp, id);
	return resp;
}

/* The result of a successful call (new reference). */
static json_t *call_ok(int fd, uint64_t id, const char *op, const char *args_json)
{
	json_t *resp = rpc(fd, id, op, args_json);
	char *s = tu_dump(resp);
	ck_assert_msg(json_is_null(json_array_get(resp, 1)), "%s %s failed: %s", op, args_json ? args_json : "nil", s);
	free(s);
	json_t *res = json_incref(json_array_get(resp, 2));
	json_decref(resp);
	return res;
}

/* The error code of a call that must fail; the message goes to msg. */
static int call_err(int fd, uint64_t id, const char *op, const char *args_json, char *msg, size_t msglen)
{
	json_t *resp = rpc(fd, id, op, args_json);
	json_t *e = json_array_get(resp, 1);
	char *s = tu_dump(resp);
	ck_assert_msg(json_is_object(e), "%s %s should fail: %s", op, args_json ? args_json : "nil", s);
	free(s);
	if (msg)
		snprintf(msg, msglen, "%s", json_string_value(json_object_get(e, "message")));
	int code = (int)json_integer_value(json_object_get(e, "code"));
	json_decref(resp);
	return code;
}

static json_int_t jint(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);
	char *s = tu_dump(obj);
	ck_assert_msg(json_is_integer(v), "no integer '%s' in %s", key, s);
	free(s);
	return json_integer_value(v);
}

static void ping_ok(int fd, uint64_t id)
{
	json_t *r = call_ok(fd, id, "ping", "{}");
	ck_assert(json_is_object(r) && json_object_size(r) == 0);
	json_decref(r);
}

static json_int_t stats_counter(int fd, uint64_t id, const char *name)
{
	json_t *r = call_ok(fd, id, "stats", NULL);
	json_int_t v = jint(json_object_get(r, "daemon"), name);
	json_decref(r);
	return v;
}

/* --- tests ---------------------------------------------------------------- */

START_TEST(e2e_hello_and_ping)
{
	int fd = conn_open();
	json_t *r = call_ok(fd, 1, "hello", "{\"version\": 1, \"client\": \"test_dispatch\"}");
	ck_assert_int_eq(jint(r, "version"), 1);
	ck_assert(json_is_string(json_object_get(r, "server")));
	ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(r, "server")), "kafkad"));
	ck_assert_int_eq(jint(r, "max_frame"), 16 << 20);
	ck_assert_int_ge(jint(r, "max_batch"), 1);
	ck_assert_int_ge(jint(r, "max_pending"), jint(r, "max_batch"));
	json_t *want_clusters = tu_json("[\"main\"]");
	ck_assert(json_equal(json_object_get(r, "clusters"), want_clusters));
	json_decref(want_clusters);
	ck_assert_str_eq(json_string_value(json_object_get(r, "default_cluster")), "main");
	json_decref(r);

	/* a newer client gets version 1; nil args mean version 1 */
	r = call_ok(fd, 2, "hello", "{\"version\": 7}");
	ck_assert_int_eq(jint(r, "version"), 1);
	json_decref(r);
	r = call_ok(fd, 3, "hello", NULL);
	ck_assert_int_eq(jint(r, "version"), 1);
	json_decref(r);
	ck_assert_int_eq(call_err(fd, 4, "hello", "{\"version\": 0}", NULL, 0), KD_ERR_UNSUPPORTED_VERSION);

	ping_ok(fd, 5);
	r = call_ok(fd, 6, "ping", NULL);
	json_decref(r);
	/* unknown args keys are ignored */
	r = call_ok(fd, 7, "ping", "{\"future_field\": [1, 2, {\"x\": null}]}");
	json_decref(r);
	/* large ids come back unchanged */
	ping_ok(fd, (UINT64_C(1) << 40) + 7);
	ping_ok(fd, (uint64_t)INT64_MAX);
	ping_ok(fd, 0);

	/* pipelining: 200 requests in one write, every id answered once */
	size_t cap = 200 * 32, used = 0;
	char *batch = malloc(cap);
	ck_assert_ptr_nonnull(batch);
	for (uint64_t id = 1000; id < 1200; id++) {
		size_t len;
		char *f = request_frame(id, "ping", NULL, &len);
		ck_assert_uint_le(used + len, cap);
		memcpy(batch + used, f, len);
		used += len;
		free(f);
	}
	send_all(fd, batch, used);
	free(batch);
	bool seen[200] = {false};
	for (int i = 0; i < 200; i++) {
		json_t *resp = recv_msg(fd);
		ck_assert_ptr_nonnull(resp);
		json_int_t id = json_integer_value(json_array_get(resp, 0));
		ck_assert(id >= 1000 && id < 1200 && !seen[id - 1000]);
		seen[id - 1000] = true;
		ck_assert(json_is_null(json_array_get(resp, 1)));
		json_decref(resp);
	}
	close(fd);
}
END_TEST

START_TEST(e2e_unknown_op)
{
	int fd = conn_open();
	char msg[512];
	ck_assert_int_eq(call_err(fd, 5, "frobnicate", "{}", msg, sizeof(msg)), KD_ERR_UNKNOWN_OP);
	ck_assert_msg(strstr(msg, "frobnicate") != NULL, "message does not name the op: %s", msg);
	ping_ok(fd, 6);
	ck_assert_int_eq(call_err(fd, 7, "PING", NULL, NULL, 0), KD_ERR_UNKNOWN_OP);
	ck_assert_int_eq(call_err(fd, 8, "", NULL, NULL, 0), KD_ERR_UNKNOWN_OP);
	char longop[300];
	memset(longop, 'x', sizeof(longop) - 1);
	longop[sizeof(longop) - 1] = '\0';
	ck_assert_int_eq(call_err(fd, 10, longop, NULL, NULL, 0), KD_ERR_UNKNOWN_OP);
	ping_ok(fd, 11);
	close(fd);
}
END_TEST

/* Error messages echo what the client sent; they are msgpack str, so they
 * must stay valid UTF-8 (the Python stub unpacks with raw=False and would
 * fail on the whole frame otherwise). */
START_TEST(e2e_error_message_utf8)
{
	int fd = conn_open();
	/* valid UTF-8 in, cut by the daemon's 64-byte echo limit mid-character */
	char op[80];
	memset(op, 'x', 63);
	strcpy(op + 63, "\xc3\xa9tude"); /* "é" at bytes 63..64 */
	send_req(fd, 1, op, NULL);
	json_t *resp = recv_msg(fd); /* fails when the message is not UTF-8 */
	ck_assert_ptr_nonnull(resp);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(resp, 1), "code")), KD_ERR_UNKNOWN_OP);
	json_decref(resp);
	/* invalid UTF-8 in: the echo must not pass it on */
	send_req(fd, 2, "ping\xff", NULL);
	resp = recv_msg(fd);
	ck_assert_ptr_nonnull(resp);
	json_decref(resp);
	send_req(fd, 3, "produce", "{\"topic\": \"e2e\", \"cluster\": \"\\u00e9\"}");
	resp = recv_msg(fd);
	ck_assert_ptr_nonnull(resp);
	json_decref(resp);
	ping_ok(fd, 4);
	close(fd);
}
END_TEST

START_TEST(e2e_invalid_argument)
{
	static const struct {
		const char *op, *args;
		int code;
		const char *field; /* the message must name it */
	} t[] = {
		{"hello", "{\"version\": \"1\"}", KD_ERR_INVALID_ARGUMENT, "version"},
		{"hello", "{\"version\": 1.0}", KD_ERR_INVALID_ARGUMENT, "version"},
		{"produce", "{}", KD_ERR_INVALID_ARGUMENT, "topic"},
		{"produce", "{\"topic\": 5}", KD_ERR_INVALID_ARGUMENT, "topic"},
		{"produce", "{\"topic\": {\"$bin\": \"74\"}}", KD_ERR_INVALID_ARGUMENT, "topic"},
		{"produce", "{\"topic\": \"bad topic!\", \"value\": \"v\"}", KD_ERR_INVALID_ARGUMENT, "topic"},
		{"produce", "{\"topic\": \"t\", \"ack\": \"maybe\"}", KD_ERR_INVALID_ARGUMENT, "ack"},
		{"produce", "{\"topic\": \"t\", \"ack\": 1}", KD_ERR_INVALID_ARGUMENT, "ack"},
		{"produce", "{\"topic\": \"t\", \"messages\": \"x\"}", KD_ERR_INVALID_ARGUMENT, "messages"},
		{"produce", "{\"topic\": \"t\", \"messages\": [\"ok\", 5]}", KD_ERR_INVALID_ARGUMENT, "messages[1]"},
		{"produce", "{\"topic\": \"t\", \"messages\": [{\"value\": 5}]}", KD_ERR_INVALID_ARGUMENT, "value"},
		{"produce", "{\"topic\": \"t\", \"value\": \"v\", \"key\": [1]}", KD_ERR_INVALID_ARGUMENT, "key"},
		{"produce", "{\"topic\": \"t\", \"value\": \"v\", \"partition\": \"0\"}", KD_ERR_INVALID_ARGUMENT,
		 "partition"},
		{"produce", "{\"topic\": \"t\", \"value\": \"v\", \"partition\": -2}", KD_ERR_INVALID_ARGUMENT, "partition"},
		{"produce", "{\"topic\": \"t\", \"value\": \"v\", \"timestamp\": -1}", KD_ERR_INVALID_ARGUMENT,
		 "timestamp"},
		{"produce", "{\"topic\": \"t\", \"value\": \"v\", \"headers\": {\"a\": \"b\"}}", KD_ERR_INVALID_ARGUMENT,
		 "headers"},
		{"produce", "{\"topic\": \"t\", \"value\": \"v\", \"headers\": [[\"a\"]]}", KD_ERR_INVALID_ARGUMENT,
		 "headers[0]"},
		{"produce", "{\"topic\": \"t\", \"value\": \"v\", \"headers\": [[1, \"b\"]]}", KD_ERR_INVALID_ARGUMENT,
		 "headers[0]"},
		{"produce", "{\"topic\": \"t\", \"value\": \"v\", \"partitioner\": \"sha1\"}", KD_ERR_INVALID_ARGUMENT,
		 "partitioner"},
		{"produce", "{\"topic\": \"t\", \"value\": \"v\", \"partitioner\": \"fnv1a_random\"}",
		 KD_ERR_INVALID_ARGUMENT, "partitioner"},
		{"produce", "{\"topic\": \"t\", \"value\": \"v\", \"partitioner\": 3}", KD_ERR_INVALID_ARGUMENT,
		 "partitioner"},
		{"produce", "{\"topic\": \"t\", \"cluster\": 5}", KD_ERR_INVALID_ARGUMENT, "cluster"},
		{"produce", "{\"topic\": \"t\", \"cluster\": \"nope\"}", KD_ERR_UNKNOWN_CLUSTER, "nope"},
		{"poll_reports", "{\"max\": \"x\"}", KD_ERR_INVALID_ARGUMENT, "max"},
		{"poll_reports", "{\"max\": -1}", KD_ERR_INVALID_ARGUMENT, "max"},
		{"poll_reports", "{\"timeout_ms\": -1}", KD_ERR_INVALID_ARGUMENT, "timeout_ms"},
		{"flush", "{\"timeout_ms\": \"soon\"}", KD_ERR_INVALID_ARGUMENT, "timeout_ms"},
		{"stats", "{\"cluster\": 5}", KD_ERR_INVALID_ARGUMENT, "cluster"},
		{"stats", "{\"cluster\": \"nope\"}", KD_ERR_UNKNOWN_CLUSTER, "nope"},
		{"metadata", "{\"timeout_ms\": \"x\"}", KD_ERR_INVALID_ARGUMENT, "timeout_ms"},
		{"metadata", "{\"timeout_ms\": 0}", KD_ERR_INVALID_ARGUMENT, "timeout_ms"},
		{"metadata", "{\"topics\": \"events\"}", KD_ERR_INVALID_ARGUMENT, "topics"},
		{"metadata", "{\"topics\": [\"a\", 1]}", KD_ERR_INVALID_ARGUMENT, "topics[1]"},
		{"metadata", "{\"cluster\": \"nope\"}", KD_ERR_UNKNOWN_CLUSTER, "nope"},
	};
	int fd = conn_open();
	uint64_t id = 1;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char msg[512];
		int code = call_err(fd, id++, t[i].op, t[i].args, msg, sizeof(msg));
		ck_assert_msg(code == t[i].code, "%s %s: code %d, want %d (%s)", t[i].op, t[i].args, code, t[i].code, msg);
		ck_assert_msg(strstr(msg, t[i].field) != NULL, "%s %s: message '%s' does not name '%s'", t[i].op,
			      t[i].args, msg, t[i].field);
	}
	/* no whole-request error enqueued anything */
	ck_assert_int_eq(stats_counter(fd, id++, "produced"), 0);
	ck_assert_int_ge(stats_counter(fd, id++, "errors"), (json_int_t)(sizeof(t) / sizeof(t[0])));
	ping_ok(fd, id++);
	close(fd);
}
END_TEST

START_TEST(e2e_bad_envelope)
{
	int fd = conn_open();
	static const struct {
		const char *hex;
		bool has_id;
		uint64_t id;
	} t[] = {
		{"80", false, 0},                            /* {} */
		{"c0", false, 0},                            /* nil */
		{"92 01 a4 70696e67", false, 0},             /* [1, "ping"] */
		{"93 ff a4 70696e67 80", false, 0},          /* id -1 */
		{"93 05 01 80", true, 5},                    /* op 1 */
		{"93 06 a4 70696e67 90", true, 6},           /* args [] */
		{"93 07 c4 04 70696e67 80", true, 7},        /* op as bin */
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		send_payload_hex(fd, t[i].hex);
		json_t *resp = recv_msg(fd);
		ck_assert_msg(resp != NULL, "%s: connection closed", t[i].hex);
		char *s = tu_dump(resp);
		json_t *e = json_array_get(resp, 1);
		ck_assert_msg(json_is_object(e) && json_integer_value(json_object_get(e, "code")) == KD_ERR_BAD_REQUEST,
			      "%s: %s", t[i].hex, s);
		if (t[i].has_id)
			expect_id(resp, t[i].id);
		else
			ck_assert_msg(json_is_null(json_array_get(resp, 0)), "%s: id should be nil: %s", t[i].hex, s);
		free(s);
		json_decref(resp);
		/* the connection stays usable */
		ping_ok(fd, 100 + i);
	}
	close(fd);
}
END_TEST

/* Partition count of a topic from metadata. */
static int partition_count(int fd, uint64_t id, const char *topic)
{
	char args[256];
	snprintf(args, sizeof(args), "{\"topics\": [\"%s\"], \"timeout_ms\": 10000}", topic);
	json_t *r = call_ok(fd, id, "metadata", args);
	ck_assert_str_eq(json_string_value(json_object_get(r, "cluster")), "main");
	json_t *topics = json_object_get(r, "topics");
	ck_assert_uint_eq(json_array_size(topics), 1);
	json_t *t0 = json_array_get(topics, 0);
	ck_assert_str_eq(json_string_value(json_object_get(t0, "name")), topic);
	ck_assert(json_is_null(json_object_get(t0, "error")));
	json_t *parts = json_object_get(t0, "partitions");
	int n = (int)json_array_size(parts);
	for (int i = 0; i < n; i++) /* sorted by id */
		ck_assert_int_eq(jint(json_array_get(parts, (size_t)i), "id"), i);
	json_decref(r);
	return n;
}

START_TEST(e2e_produce_wait)
{
	int fd = conn_open();
	json_t *r = call_ok(fd, 1, "produce",
			    "{\"topic\": \"e2e-wait\", \"ack\": \"wait\", \"value\": \"hello\", \"key\": \"k1\","
			    " \"headers\": [[\"h\", {\"$bin\": \"0001\"}], [\"n\", null]], \"timestamp\": 1700000000123}");
	ck_assert_int_eq(jint(r, "count"), 1);
	json_t *results = json_object_get(r, "results");
	ck_assert_uint_eq(json_array_size(results), 1);
	json_t *r0 = json_array_get(results, 0);
	ck_assert_uint_eq(json_array_size(r0), 3);
	ck_assert_int_ge(json_integer_value(json_array_get(r0, 0)), 0);
	ck_assert_int_ge(json_integer_value(json_array_get(r0, 1)), 0);
	ck_assert(json_is_null(json_array_get(r0, 2)));
	ck_assert(json_object_get(r, "seq") == NULL); /* wait mode has no seq */
	json_decref(r);

	/* a batch to an explicit partition gets consecutive offsets */
	r = call_ok(fd, 2, "produce",
		    "{\"topic\": \"e2e-wait\", \"ack\": \"wait\", \"messages\": ["
		    "{\"value\": \"a\", \"partition\": 0}, {\"value\": {\"$bin\": \"ff00\"}, \"partition\": 0},"
		    " {\"value\": null, \"key\": \"tomb\", \"partition\": 0}]}");
	ck_assert_int_eq(jint(r, "count"), 3);
	results = json_object_get(r, "results");
	ck_assert_uint_eq(json_array_size(results), 3);
	json_int_t off0 = json_integer_value(json_array_get(json_array_get(results, 0), 1));
	for (size_t i = 0; i < 3; i++) {
		json_t *ri = json_array_get(results, i);
		ck_assert_int_eq(json_integer_value(json_array_get(ri, 0)), 0);
		ck_assert_int_eq(json_integer_value(json_array_get(ri, 1)), off0 + (json_int_t)i);
		ck_assert(json_is_null(json_array_get(ri, 2)));
	}
	json_decref(r);

	/* per-message problems are outcomes, not request errors */
	r = call_ok(fd, 3, "produce",
		    "{\"topic\": \"e2e-wait\", \"ack\": \"wait\", \"messages\": [{\"value\": \"x\", \"partition\": 999},"
		    " {\"value\": \"y\", \"partition\": 1}]}");
	results = json_object_get(r, "results");
	ck_assert_uint_eq(json_array_size(results), 2);
	json_t *bad = json_array_get(json_array_get(results, 0), 2);
	char *s = tu_dump(r);
	ck_assert_msg(json_is_object(bad), "partition 999 should fail: %s", s);
	ck_assert_int_ge(jint(bad, "code"), KD_ERR_KAFKA_BASE - 1000);
	ck_assert_int_eq(json_integer_value(json_array_get(json_array_get(results, 0), 1)), -1);
	ck_assert_msg(json_is_null(json_array_get(json_array_get(results, 1), 2)), "%s", s);
	ck_assert_int_eq(json_integer_value(json_array_get(json_array_get(results, 1), 0)), 1);
	free(s);
	json_decref(r);

	/* pykafka_hashing puts a key where PyKafka would */
	int n = partition_count(fd, 4, "e2e-wait");
	ck_assert_int_ge(n, 2);
	static const char *keys[] = {"user-42", "bravo", "tombstone", "a", "abc"};
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		char args[256];
		snprintf(args, sizeof(args),
			 "{\"topic\": \"e2e-wait\", \"ack\": \"wait\", \"partitioner\": \"pykafka_hashing\","
			 " \"messages\": [{\"value\": \"v\", \"key\": \"%s\"}]}",
			 keys[i]);
		r = call_ok(fd, 10 + i, "produce", args);
		json_int_t p = json_integer_value(json_array_get(json_array_get(json_object_get(r, "results"), 0), 0));
		ck_assert_msg(p == partitioner_pykafka_hash(keys[i], strlen(keys[i]), n), "key %s went to %lld", keys[i],
			      (long long)p);
		json_decref(r);
	}

	/* ack=none answers at once with the count */
	r = call_ok(fd, 20, "produce", "{\"topic\": \"e2e-wait\", \"ack\": \"none\", \"messages\": [\"a\", \"b\"]}");
	ck_assert_int_eq(jint(r, "count"), 2);
	ck_assert_uint_eq(json_object_size(r), 1);
	json_decref(r);
	r = call_ok(fd, 21, "flush", "{\"timeout_ms\": 10000}");
	ck_assert_int_eq(jint(r, "remaining"), 0);
	json_decref(r);
	close(fd);
}
END_TEST

/* Adds runs to seen[] (seq 1-based, capacity n); returns messages added. */
static int take_runs(json_t *runs, bool *seen, int n, json_int_t *partition_of_first)
{
	int added = 0;
	size_t i;
	json_t *run;
	json_array_foreach(runs, i, run) {
		char *s = tu_dump(run);
		ck_assert_msg(json_is_array(run) && json_array_size(run) == 5, "bad run %s", s);
		json_int_t seq = json_integer_value(json_array_get(run, 0));
		json_int_t count = json_integer_value(json_array_get(run, 1));
		json_int_t part = json_integer_value(json_array_get(run, 2));
		json_int_t off = json_integer_value(json_array_get(run, 3));
		ck_assert_msg(count >= 1 && seq >= 1 && seq + count - 1 <= n, "run %s outside 1..%d", s, n);
		ck_assert_msg(part >= 0 && off >= 0, "run %s: no partition/offset", s);
		ck_assert_msg(json_is_null(json_array_get(run, 4)), "run %s failed", s);
		for (json_int_t q = seq; q < seq + count; q++) {
			ck_assert_msg(!seen[q - 1], "seq %lld reported twice (run %s)", (long long)q, s);
			seen[q - 1] = true;
		}
		if (partition_of_first && seq == 1)
			*partition_of_first = part;
		added += (int)count;
		free(s);
	}
	return added;
}

START_TEST(e2e_produce_report_and_poll)
{
	int fd = conn_open();
	enum { N1 = 50, N2 = 10 };
	bool seen[N1 + N2] = {false};
	int got = 0;
	char *args = malloc(16384);
	ck_assert_ptr_nonnull(args);
	int o = snprintf(args, 16384, "{\"topic\": \"e2e-report\", \"ack\": \"report\", \"messages\": [");
	for (int i = 0; i < N1; i++)
		o += snprintf(args + o, 16384 - (size_t)o, "%s\"m%d\"", i ? ", " : "", i);
	snprintf(args + o, 16384 - (size_t)o, "]}");
	json_t *r = call_ok(fd, 1, "produce", args);
	ck_assert_int_eq(jint(r, "count"), N1);
	ck_assert_int_eq(jint(r, "seq"), 1);
	ck_assert(json_is_array(json_object_get(r, "reports")));
	got += take_runs(json_object_get(r, "reports"), seen, N1 + N2, NULL);
	json_decref(r);

	uint64_t id = 2;
	double deadline = now_s() + 20;
	while (got < N1) {
		ck_assert_msg(now_s() < deadline, "only %d of %d reports within 20 s", got, N1);
		r = call_ok(fd, id++, "poll_reports", "{\"timeout_ms\": 2000}");
		ck_assert_int_ge(jint(r, "pending"), 0);
		got += take_runs(json_object_get(r, "reports"), seen, N1 + N2, NULL);
		json_decref(r);
	}
	ck_assert_int_eq(got, N1);

	/* the next batch continues the sequence */
	r = call_ok(fd, id++, "produce",
		    "{\"topic\": \"e2e-report\", \"messages\": [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\", \"g\", \"h\","
		    " \"i\", \"j\"]}"); /* report is the default */
	ck_assert_int_eq(jint(r, "count"), N2);
	ck_assert_int_eq(jint(r, "seq"), N1 + 1);
	got += take_runs(json_object_get(r, "reports"), seen, N1 + N2, NULL);
	json_decref(r);
	r = call_ok(fd, id++, "flush", "{\"timeout_ms\": 10000}");
	ck_assert_int_eq(jint(r, "remaining"), 0);
	json_decref(r);
	while (got < N1 + N2) {
		ck_assert_msg(now_s() < deadline, "only %d of %d reports within 20 s", got, N1 + N2);
		r = call_ok(fd, id++, "poll_reports", "{\"timeout_ms\": 2000}");
		got += take_runs(json_object_get(r, "reports"), seen, N1 + N2, NULL);
		json_decref(r);
	}
	for (int i = 0; i < N1 + N2; i++)
		ck_assert_msg(seen[i], "seq %d never reported", i + 1);
	/* nothing left */
	r = call_ok(fd, id++, "poll_reports", "{\"timeout_ms\": 0}");
	ck_assert_uint_eq(json_array_size(json_object_get(r, "reports")), 0);
	ck_assert_int_eq(jint(r, "pending"), 0);
	json_decref(r);
	free(args);

	/* `max` bounds messages, not runs: 20 messages on one partition come
	 * back 7 + 7 + 6 */
	r = call_ok(fd, id++, "produce",
		    "{\"topic\": \"e2e-report\", \"messages\": [{\"value\": \"p\", \"partition\": 1}, \"1\", \"2\", \"3\","
		    " \"4\", \"5\", \"6\", \"7\", \"8\", \"9\", \"10\", \"11\", \"12\", \"13\", \"14\", \"15\", \"16\","
		    " \"17\", \"18\", \"19\"], \"partitioner\": \"consistent\"}");
	ck_assert_int_eq(jint(r, "seq"), N1 + N2 + 1);
	json_int_t queued_early = 0;
	size_t i;
	json_t *run;
	json_array_foreach(json_object_get(r, "reports"), i, run) queued_early += json_integer_value(json_array_get(run, 1));
	json_decref(r);
	r = call_ok(fd, id++, "flush", "{\"timeout_ms\": 10000}");
	ck_assert_int_eq(jint(r, "remaining"), 0);
	json_decref(r);
	json_int_t left = 20 - queued_early;
	while (left > 0) {
		r = call_ok(fd, id++, "poll_reports", "{\"max\": 7}");
		json_int_t sum = 0;
		json_array_foreach(json_object_get(r, "reports"), i, run) sum += json_integer_value(json_array_get(run, 1));
		ck_assert_int_eq(sum, left < 7 ? left : 7);
		left -= sum;
		ck_assert_int_eq(jint(r, "pending"), 0);
		json_decref(r);
	}

	/* one parked poll per connection: a second one gets INVALID_STATE at
	 * once, the first answers empty when its timeout passes */
	send_req(fd, 500, "poll_reports", "{\"timeout_ms\": 300}");
	send_req(fd, 501, "poll_reports", "{\"timeout_ms\": 300}");
	json_t *first = recv_msg(fd), *second = recv_msg(fd);
	ck_assert(first && second);
	expect_id(first, 501);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(first, 1), "code")), KD_ERR_INVALID_STATE);
	expect_id(second, 500);
	ck_assert(json_is_null(json_array_get(second, 1)));
	ck_assert_uint_eq(json_array_size(json_object_get(json_array_get(second, 2), "reports")), 0);
	json_decref(first);
	json_decref(second);
	ping_ok(fd, id++);
	close(fd);
}
END_TEST

/* Expects one BAD_FRAME error frame and then EOF on fd. */
static void expect_bad_frame_then_eof(int fd, const char *what)
{
	json_t *resp = recv_msg(fd);
	ck_assert_msg(resp != NULL, "%s: closed without an error frame", what);
	char *s = tu_dump(resp);
	ck_assert_msg(json_is_null(json_array_get(resp, 0)), "%s: %s", what, s);
	json_t *e = json_array_get(resp, 1);
	ck_assert_msg(json_is_object(e) && json_integer_value(json_object_get(e, "code")) == KD_ERR_BAD_FRAME &&
			      strcmp(json_string_value(json_object_get(e, "name")), "BAD_FRAME") == 0,
		      "%s: %s", what, s);
	free(s);
	json_decref(resp);
	json_t *more = recv_msg(fd);
	ck_assert_msg(more == NULL, "%s: the connection stayed open after BAD_FRAME", what);
}

START_TEST(e2e_bad_frame)
{
	int other = conn_open();
	ping_ok(other, 1);

	int fd = conn_open();
	const uint8_t oversize[4] = {0xff, 0xff, 0xff, 0xff};
	send_all(fd, oversize, 4);
	expect_bad_frame_then_eof(fd, "length 0xffffffff");
	close(fd);
	ping_ok(other, 2);

	fd = conn_open();
	const uint8_t just_over[4] = {0x01, 0x00, 0x00, 0x01}; /* max_frame + 1 */
	send_all(fd, just_over, 4);
	expect_bad_frame_then_eof(fd, "length max_frame + 1");
	close(fd);

	fd = conn_open();
	const uint8_t zero[4] = {0, 0, 0, 0};
	send_all(fd, zero, 4);
	expect_bad_frame_then_eof(fd, "length 0");
	close(fd);

	fd = conn_open();
	send_payload_hex(fd, "c1");
	expect_bad_frame_then_eof(fd, "invalid msgpack");
	close(fd);

	fd = conn_open();
	send_payload_hex(fd, "93 07 a4 70696e67 80 00");
	expect_bad_frame_then_eof(fd, "trailing bytes");
	close(fd);

	fd = conn_open();
	send_payload_hex(fd, "93 07 a4 7069");
	expect_bad_frame_then_eof(fd, "truncated msgpack");
	close(fd);

	/* requests before the garbage are answered first */
	fd = conn_open();
	size_t len;
	char *f = request_frame(9, "ping", NULL, &len);
	char buf[64];
	memcpy(buf, f, len);
	memcpy(buf + len, oversize, 4);
	free(f);
	send_all(fd, buf, len + 4);
	json_t *resp = recv_msg(fd);
	ck_assert_ptr_nonnull(resp);
	expect_id(resp, 9);
	ck_assert(json_is_null(json_array_get(resp, 1)));
	json_decref(resp);
	expect_bad_frame_then_eof(fd, "ping then garbage");
	close(fd);

	/* a half-sent frame and a disconnect are no error at all */
	fd = conn_open();
	const uint8_t partial[6] = {0, 0, 0, 10, 0x93, 0x01};
	send_all(fd, partial, sizeof(partial));
	close(fd);

	/* the independent connection never noticed */
	ping_ok(other, 3);
	ck_assert_int_eq(stats_counter(other, 4, "bad_frames"), 7);
	close(other);
}
END_TEST

START_TEST(e2e_orphan_reports)
{
	/* produce, then close without reading anything */
	int fd = conn_open();
	send_req(fd, 1, "produce",
		 "{\"topic\": \"e2e-orphan\", \"ack\": \"report\", \"messages\": [\"a\", \"b\", \"c\", \"d\", \"e\", \"f\","
		 " \"g\", \"h\", \"i\", \"j\", \"k\", \"l\", \"m\", \"n\", \"o\", \"p\", \"q\", \"r\", \"s\", \"t\"]}");
	close(fd);
	/* the same with an ack=wait request still waiting */
	fd = conn_open();
	send_req(fd, 1, "produce",
		 "{\"topic\": \"e2e-orphan\", \"ack\": \"wait\", \"messages\": [\"1\", \"2\", \"3\", \"4\", \"5\"]}");
	close(fd);

	int st = conn_open();
	uint64_t id = 1;
	json_int_t delivered = 0;
	double deadline = now_s() + 20;
	while ((delivered = stats_counter(st, id++, "orphan_delivered")) < 25) {
		ck_assert_msg(now_s() < deadline, "orphan_delivered is %lld after 20 s, want 25", (long long)delivered);
		sleep_ms(50);
	}
	ck_assert_int_eq(delivered, 25);
	ck_assert_int_eq(stats_counter(st, id++, "orphan_failed"), 0);
	ck_assert_int_ge(stats_counter(st, id++, "delivered"), 25);
	ck_assert_int_eq(stats_counter(st, id++, "produced"), 25);
	ck_assert_int_eq(stats_counter(st, id++, "reports_pending"), 0);
	/* the stats shape */
	json_t *r = call_ok(st, id++, "stats", "{\"cluster\": \"main\"}");
	json_t *cl = json_object_get(json_object_get(r, "clusters"), "main");
	ck_assert_ptr_nonnull(cl);
	ck_assert_str_eq(json_string_value(json_object_get(cl, "bootstrap")), "mock");
	ck_assert_int_ge(jint(cl, "outq_len"), 0);
	ck_assert(json_is_null(json_object_get(cl, "librdkafka")) || json_is_string(json_object_get(cl, "librdkafka")));
	static const char *counters[] = {"uptime_ms",      "connections",      "connections_total", "requests",
					 "errors",         "bad_frames",       "produced",          "delivered",
					 "delivery_failed", "orphan_delivered", "orphan_failed",     "enqueue_failed",
					 "reports_pending"};
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
		ck_assert_int_ge(jint(json_object_get(r, "daemon"), counters[i]), 0);
	ck_assert_int_eq(jint(json_object_get(r, "daemon"), "connections"), 1);
	ck_assert_int_ge(jint(json_object_get(r, "daemon"), "connections_total"), 3);
	json_decref(r);
	close(st);
}
END_TEST

START_TEST(e2e_metadata)
{
	int fd = conn_open();
	json_t *r = call_ok(fd, 1, "produce", "{\"topic\": \"e2e-meta\", \"ack\": \"wait\", \"value\": \"v\"}");
	json_decref(r);
	r = call_ok(fd, 2, "metadata", "{\"topics\": [\"e2e-meta\", \"e2e-missing\"], \"timeout_ms\": 10000}");
	json_t *brokers = json_object_get(r, "brokers");
	ck_assert_uint_ge(json_array_size(brokers), 1);
	json_t *b0 = json_array_get(brokers, 0);
	ck_assert(json_is_integer(json_object_get(b0, "id")) && json_is_string(json_object_get(b0, "host")) &&
		  json_is_integer(json_object_get(b0, "port")));
	json_t *topics = json_object_get(r, "topics");
	ck_assert_uint_eq(json_array_size(topics), 2);
	json_t *t0 = json_array_get(topics, 0), *t1 = json_array_get(topics, 1);
	ck_assert_str_eq(json_string_value(json_object_get(t0, "name")), "e2e-meta");
	ck_assert(json_is_null(json_object_get(t0, "error")));
	json_t *parts = json_object_get(t0, "partitions");
	ck_assert_uint_ge(json_array_size(parts), 1);
	for (size_t i = 0; i < json_array_size(parts); i++) {
		json_t *p = json_array_get(parts, i);
		ck_assert_int_eq(jint(p, "id"), (json_int_t)i);
		ck_assert(json_is_array(json_object_get(p, "replicas")) && json_is_array(json_object_get(p, "isrs")));
		ck_assert(json_is_integer(json_object_get(p, "leader")));
	}
	ck_assert_str_eq(json_string_value(json_object_get(t1, "name")), "e2e-missing");
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(t1, "error"), "name")), "UNKNOWN_TOPIC_OR_PART");
	ck_assert_uint_eq(json_array_size(json_object_get(t1, "partitions")), 0);
	json_decref(r);
	/* all topics */
	r = call_ok(fd, 3, "metadata", "{}");
	ck_assert(json_array_size(json_object_get(r, "topics")) >= 1);
	json_decref(r);
	close(fd);
}
END_TEST

START_TEST(e2e_too_large_batch)
{
	int fd = conn_open();
	json_t *h = call_ok(fd, 1, "hello", NULL);
	json_int_t max_batch = jint(h, "max_batch");
	json_decref(h);
	/* max_batch + 1 one-byte compact messages, packed directly */
	kd_writer w;
	writer_init(&w);
	msgpack_pack_array(&w.pk, 3);
	msgpack_pack_uint64(&w.pk, 2);
	pack_cstr(&w.pk, "produce");
	msgpack_pack_map(&w.pk, 2);
	pack_kv_str(&w.pk, "topic", "e2e-large");
	pack_cstr(&w.pk, "messages");
	msgpack_pack_array(&w.pk, (size_t)max_batch + 1);
	for (json_int_t i = 0; i <= max_batch; i++) {
		msgpack_pack_bin(&w.pk, 1);
		msgpack_pack_bin_body(&w.pk, "x", 1);
	}
	size_t len;
	char *frame = writer_take(&w, &len);
	send_all(fd, frame, len);
	free(frame);
	json_t *resp = recv_msg(fd);
	ck_assert_ptr_nonnull(resp);
	expect_id(resp, 2);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(resp, 1), "code")), KD_ERR_TOO_LARGE);
	json_decref(resp);
	ck_assert_int_eq(stats_counter(fd, 3, "produced"), 0);
	close(fd);
}
END_TEST

START_TEST(e2e_1000_connections)
{
	enum { N = 1000 };
	struct rlimit rl;
	ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
	if (rl.rlim_cur < N + 100) {
		rlim_t want = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > 4096 ? 4096 : rl.rlim_max;
		rl.rlim_cur = want;
		ck_assert_int_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
	}
	ck_assert_msg(rl.rlim_cur >= N + 100, "RLIMIT_NOFILE hard limit %llu is too low for %d connections",
		      (unsigned long long)rl.rlim_max, N);
	static int fds[N];
	for (int i = 0; i < N; i++)
		fds[i] = conn_open(); /* blocking connect waits while the backlog is full */
	/* every connection has a request in flight at the same time */
	for (int i = 0; i < N; i++)
		send_req(fds[i], (uint64_t)i + 1, "ping", NULL);
	for (int i = 0; i < N; i++) {
		json_t *resp = recv_msg(fds[i]);
		ck_assert_msg(resp != NULL, "connection %d closed", i);
		expect_id(resp, (uint64_t)i + 1);
		ck_assert(json_is_null(json_array_get(resp, 1)));
		json_decref(resp);
	}
	int st = conn_open();
	json_int_t conns = stats_counter(st, 1, "connections");
	ck_assert_msg(conns >= N + 1 && conns <= N + 2, "stats says %lld connections", (long long)conns);
	for (int i = 0; i < N; i++)
		close(fds[i]);
	/* they go away */
	double deadline = now_s() + 10;
	uint64_t id = 2;
	while ((conns = stats_counter(st, id++, "connections")) != 1) {
		ck_assert_msg(now_s() < deadline, "still %lld connections after closing", (long long)conns);
		sleep_ms(20);
	}
	ping_ok(st, id++);
	close(st);
}
END_TEST

START_TEST(e2e_sigterm_with_messages_in_flight)
{
	/* messages queued when SIGTERM arrives are still delivered; the
	 * teardown checks the exit status and timing */
	int fd = conn_open();
	json_t *r = call_ok(fd, 1, "produce",
			    "{\"topic\": \"e2e-term\", \"ack\": \"none\", \"messages\": [\"a\", \"b\", \"c\", \"d\"]}");
	json_decref(r);
	send_req(fd, 2, "produce", "{\"topic\": \"e2e-term\", \"ack\": \"wait\", \"messages\": [\"e\", \"f\"]}");
	double t0 = now_s();
	int status = daemon_stop(&D, 10);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "exit status 0x%x", status);
	ck_assert_msg(now_s() - t0 < 5, "took %.1f s", now_s() - t0);
	/* the connection was closed (possibly after the wait answer) */
	json_t *resp;
	while ((resp = recv_msg(fd)) != NULL) {
		expect_id(resp, 2);
		json_decref(resp);
	}
	close(fd);
	/* the socket is gone: nobody can connect any more */
	ck_assert_int_lt(try_connect(D.sock), 0);
	/* restart so the teardown has a daemon to stop */
	daemon_cleanup_dir(&D);
	daemon_start(&D);
}
END_TEST

START_TEST(e2e_framing_edge_cases)
{
	int fd = conn_open();
	/* a request sent one byte at a time */
	size_t len;
	char *f = request_frame(1, "ping", "{}", &len);
	for (size_t i = 0; i < len; i++) {
		send_all(fd, f + i, 1);
		sleep_ms(1);
	}
	free(f);
	json_t *resp = recv_msg(fd);
	ck_assert_ptr_nonnull(resp);
	expect_id(resp, 1);
	json_decref(resp);

	/* empty batches */
	json_t *r = call_ok(fd, 2, "produce", "{\"topic\": \"e2e-edge\", \"ack\": \"wait\", \"messages\": []}");
	ck_assert_int_eq(jint(r, "count"), 0);
	ck_assert_uint_eq(json_array_size(json_object_get(r, "results")), 0);
	json_decref(r);
	r = call_ok(fd, 3, "produce", "{\"topic\": \"e2e-edge\", \"messages\": []}");
	ck_assert_int_eq(jint(r, "count"), 0);
	json_decref(r);

	/* frames larger than the daemon's initial read buffer */
	const size_t big = 900 * 1024;
	kd_writer w;
	writer_init(&w);
	msgpack_pack_array(&w.pk, 3);
	msgpack_pack_uint64(&w.pk, 4);
	pack_cstr(&w.pk, "produce");
	msgpack_pack_map(&w.pk, 3);
	pack_kv_str(&w.pk, "topic", "e2e-edge");
	pack_kv_str(&w.pk, "ack", "wait");
	pack_cstr(&w.pk, "messages");
	msgpack_pack_array(&w.pk, 2);
	char *value = calloc(1, 2 * 1024 * 1024);
	ck_assert_ptr_nonnull(value);
	msgpack_pack_bin(&w.pk, big);
	msgpack_pack_bin_body(&w.pk, value, big);
	/* bigger than librdkafka's message.max.bytes: that message's outcome */
	msgpack_pack_bin(&w.pk, 2 * 1024 * 1024);
	msgpack_pack_bin_body(&w.pk, value, 2 * 1024 * 1024);
	free(value);
	char *frame = writer_take(&w, &len);
	send_all(fd, frame, len);
	free(frame);
	resp = recv_msg(fd);
	ck_assert_ptr_nonnull(resp);
	expect_id(resp, 4);
	char *s = tu_dump(resp);
	json_t *results = json_object_get(json_array_get(resp, 2), "results");
	ck_assert_msg(json_array_size(results) == 2, "%s", s);
	ck_assert_msg(json_is_null(json_array_get(json_array_get(results, 0), 2)), "900 KiB message failed: %s", s);
	json_t *e = json_array_get(json_array_get(results, 1), 2);
	ck_assert_msg(json_is_object(e) && strcmp(json_string_value(json_object_get(e, "name")), "MSG_SIZE_TOO_LARGE") == 0,
		      "2 MiB message: %s", s);
	free(s);
	json_decref(resp);
	ping_ok(fd, 5);
	close(fd);
}
END_TEST

/* Many pipelined requests from a client that reads only when its writes
 * block: the daemon's unsent responses (~124 bytes per hello, ~10 MB in
 * all) pass write_high_water (8 MiB), so it stops reading and resumes once
 * the client drains them; every request is answered exactly once. */
START_TEST(e2e_pipelining_backpressure)
{
	enum { N = 80000 };
	int fd = conn_open();
	int rcvbuf = 16 * 1024; /* small, so the daemon's responses back up */
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
	/* every frame has the same length: ids are all packed as uint32 */
	size_t len, sent = 0;
	char *f;
	kd_writer w;
	writer_init(&w);
	msgpack_pack_array(&w.pk, 3);
	msgpack_pack_uint32(&w.pk, 0x01000000u); /* forces the 0xce form */
	pack_cstr(&w.pk, "hello");
	msgpack_pack_map(&w.pk, 0);
	f = writer_take(&w, &len);
	ck_assert_uint_eq((unsigned char)f[5], 0xce);
	size_t total = len * N;
	char *all = malloc(total);
	ck_assert_ptr_nonnull(all);
	for (uint32_t i = 0; i < N; i++) {
		uint32_t id = 0x01000000u + i;
		memcpy(all + i * len, f, len);
		all[i * len + 6] = (char)(id >> 24);
		all[i * len + 7] = (char)(id >> 16);
		all[i * len + 8] = (char)(id >> 8);
		all[i * len + 9] = (char)id;
	}
	free(f);
	int flags = fcntl(fd, F_GETFL);
	fcntl(fd, F_SETFL, flags | O_NONBLOCK);
	/* write everything first, reading only when the writes block */
	char *rbuf = malloc(1 << 20);
	ck_assert_ptr_nonnull(rbuf);
	size_t rlen = 0;
	uint32_t resp_len = 0;
	int answered = 0;
	static bool seen[N];
	memset(seen, 0, sizeof(seen));
	double deadline = now_s() + 40;
	while (answered < N) {
		ck_assert_msg(now_s() < deadline, "%d of %d answered, %zu of %zu bytes sent", answered, N, sent, total);
		if (sent < total) {
			ssize_t n = send(fd, all + sent, total - sent, MSG_NOSIGNAL);
			if (n > 0) {
				sent += (size_t)n;
				continue;
			}
			ck_assert_msg(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "send: %s", strerror(errno));
		}
		struct pollfd pfd = {.fd = fd, .events = POLLIN | (sent < total ? POLLOUT : 0)};
		ck_assert_int_ge(poll(&pfd, 1, 1000), 0);
		if (!(pfd.revents & POLLIN))
			continue;
		ssize_t n = recv(fd, rbuf + rlen, (1 << 20) - rlen, 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		ck_assert_msg(n > 0, "connection closed after %d answers", answered);
		rlen += (size_t)n;
		size_t off = 0;
		for (;;) {
			uint32_t plen;
			int st = codec_frame_check((const uint8_t *)rbuf + off, rlen - off, 1u << 20, &plen);
			ck_assert_int_ne(st, KD_FRAME_BAD_LENGTH);
			if (st != KD_FRAME_READY)
				break;
			const uint8_t *p = (const uint8_t *)rbuf + off + 4;
			/* [uint32 id, nil, {...}]: 93 ce XXXXXXXX c0 87 ..., all alike */
			if (resp_len == 0)
				resp_len = plen;
			ck_assert_msg(plen == resp_len && p[0] == 0x93 && p[1] == 0xce && p[6] == 0xc0 && p[7] == 0x87,
				      "unexpected response of %u bytes", plen);
			uint32_t id = (uint32_t)p[2] << 24 | (uint32_t)p[3] << 16 | (uint32_t)p[4] << 8 | p[5];
			ck_assert(id >= 0x01000000u && id < 0x01000000u + N);
			ck_assert_msg(!seen[id - 0x01000000u], "id %u answered twice", id);
			seen[id - 0x01000000u] = true;
			answered++;
			off += 4 + plen;
		}
		memmove(rbuf, rbuf + off, rlen - off);
		rlen -= off;
	}
	ck_assert_uint_eq(sent, total);
	/* the responses did exceed write_high_water (8 MiB) */
	ck_assert_uint_gt((uint64_t)(resp_len + 4) * N, UINT64_C(8) << 20);
	free(rbuf);
	free(all);
	fcntl(fd, F_SETFL, flags);
	ping_ok(fd, 7);
	close(fd);
}
END_TEST

/* Restarts the fixture's daemon with extra [daemon] keys. */
static void restart_with(const char *extra)
{
	int st = daemon_stop(&D, 10);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status 0x%x", st);
	daemon_cleanup_dir(&D);
	daemon_start_with(&D, extra);
}

START_TEST(e2e_max_connections)
{
	restart_with("max_connections = 2\n");
	int a = conn_open();
	/* wait until the startup probe's connection is gone */
	uint64_t id = 1;
	double deadline = now_s() + 10;
	while (stats_counter(a, id++, "connections") != 1) {
		ck_assert(now_s() < deadline);
		sleep_ms(10);
	}
	int b = conn_open();
	ping_ok(b, 1);
	/* one too many: an error frame, then EOF */
	int c = conn_open();
	json_t *resp = recv_msg(c);
	ck_assert_msg(resp != NULL, "the third connection was closed without an error frame");
	char *s = tu_dump(resp);
	ck_assert_msg(json_is_null(json_array_get(resp, 0)) && json_is_object(json_array_get(resp, 1)), "%s", s);
	ck_assert_msg(json_integer_value(json_object_get(json_array_get(resp, 1), "code")) == KD_ERR_INTERNAL, "%s", s);
	free(s);
	json_decref(resp);
	ck_assert_ptr_null(recv_msg(c));
	close(c);
	/* the others are unaffected, and a slot frees up when one closes */
	ping_ok(a, id++);
	ping_ok(b, 2);
	close(b);
	deadline = now_s() + 10;
	while (stats_counter(a, id++, "connections") != 1) {
		ck_assert(now_s() < deadline);
		sleep_ms(10);
	}
	int d = conn_open();
	ping_ok(d, 1);
	close(d);
	close(a);
}
END_TEST

/* Three produce requests (5 messages each, ack=report) and a ping, in one
 * write. */
static void send_three_produces_and_ping(int fd)
{
	char buf[1024];
	size_t used = 0;
	for (int i = 0; i < 3; i++) {
		size_t len;
		char *f = request_frame(1 + (uint64_t)i, "produce",
					"{\"topic\": \"e2e-held\", \"messages\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", &len);
		ck_assert_uint_le(used + len, sizeof(buf));
		memcpy(buf + used, f, len);
		used += len;
		free(f);
	}
	size_t len;
	char *f = request_frame(4, "ping", NULL, &len);
	memcpy(buf + used, f, len);
	used += len;
	free(f);
	send_all(fd, buf, used);
}

/* SPEC 4.4/5.3: past max_pending uncollected reports the daemon holds the
 * produce request (it does not fail it), keeps answering other ops, and
 * resumes once reports are collected. */
START_TEST(e2e_max_pending_holds_produce)
{
	restart_with("max_batch = 5\nmax_pending = 10\n");
	int fd = conn_open();
	send_three_produces_and_ping(fd);
	bool seen[15] = {false};
	int got = 0;
	/* #1, #2 and the ping answer at once; #3 (messages 11..15) is held */
	for (int i = 0; i < 3; i++) {
		json_t *resp = recv_msg(fd);
		ck_assert_ptr_nonnull(resp);
		char *s = tu_dump(resp);
		ck_assert_msg(json_is_null(json_array_get(resp, 1)), "%s", s);
		json_int_t id = json_integer_value(json_array_get(resp, 0));
		ck_assert_msg(id == 1 || id == 2 || id == 4, "response %s before any report was collected", s);
		json_t *r = json_array_get(resp, 2);
		if (id != 4) {
			ck_assert_int_eq(jint(r, "seq"), id == 1 ? 1 : 6);
			got += take_runs(json_object_get(r, "reports"), seen, 15, NULL);
		}
		free(s);
		json_decref(resp);
	}
	/* nothing more until reports are collected */
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	ck_assert_int_eq(poll(&pfd, 1, 300), 0);
	/* collect; #3 then goes through */
	uint64_t id = 100;
	bool third = false;
	double deadline = now_s() + 20;
	while (got < 15 || !third) {
		ck_assert_msg(now_s() < deadline, "%d of 15 reports, third answered: %d", got, third);
		send_req(fd, id, "poll_reports", "{\"timeout_ms\": 1000}");
		for (;;) {
			json_t *resp = recv_msg(fd);
			ck_assert_ptr_nonnull(resp);
			char *s = tu_dump(resp);
			ck_assert_msg(json_is_null(json_array_get(resp, 1)), "%s", s);
			json_int_t rid = json_integer_value(json_array_get(resp, 0));
			json_t *r = json_array_get(resp, 2);
			got += take_runs(json_object_get(r, "reports"), seen, 15, NULL);
			if (rid == 3) {
				ck_assert_msg(!third, "request 3 answered twice");
				third = true;
				ck_assert_int_eq(jint(r, "seq"), 11);
				ck_assert_int_eq(jint(r, "count"), 5);
			} else {
				ck_assert_msg(rid == (json_int_t)id, "unexpected %s", s);
			}
			free(s);
			json_decref(resp);
			if (rid == (json_int_t)id)
				break;
		}
		id++;
	}
	ck_assert_int_eq(got, 15);
	close(fd);
}
END_TEST

/* SPEC 5.2: "every message of a fully received produce request is
 * delivered", including a request the daemon was holding for room. */
START_TEST(e2e_disconnect_with_held_produce)
{
	restart_with("max_batch = 5\nmax_pending = 10\n");
	int fd = conn_open();
	send_three_produces_and_ping(fd);
	/* the ping's answer proves all three produce frames were read */
	for (int i = 0; i < 3; i++) {
		json_t *resp = recv_msg(fd);
		ck_assert_ptr_nonnull(resp);
		json_decref(resp);
	}
	close(fd);
	int st = conn_open();
	uint64_t id = 1;
	double deadline = now_s() + 3;
	json_int_t produced;
	while ((produced = stats_counter(st, id++, "produced")) < 15 && now_s() < deadline)
		sleep_ms(50);
	ck_assert_msg(produced == 15, "after the client left, %lld of its 15 messages were produced", (long long)produced);
	deadline = now_s() + 10;
	json_int_t outcomes;
	for (;;) {
		outcomes = stats_counter(st, id++, "delivered");
		outcomes += stats_counter(st, id++, "delivery_failed");
		if (outcomes >= 15 || now_s() > deadline)
			break;
		sleep_ms(50);
	}
	ck_assert_int_eq(outcomes, 15);
	close(st);
}
END_TEST

/* --- request fuzzing against the daemon --------------------------------- */

static uint64_t fuzz_rng_state;

static uint64_t fuzz_rng(void)
{
	fuzz_rng_state ^= fuzz_rng_state >> 12;
	fuzz_rng_state ^= fuzz_rng_state << 25;
	fuzz_rng_state ^= fuzz_rng_state >> 27;
	return fuzz_rng_state * UINT64_C(2685821657736338717);
}

/* Reads one frame without converting it: returns false on EOF; sets *id
 * (UINT64_MAX when nil) and *code (0 on success). */
static bool recv_raw(int fd, uint64_t *id, int64_t *code)
{
	char *buf;
	msgpack_zone z;
	msgpack_object o;
	if (!recv_frame(fd, &buf, &z, &o))
		return false;
	ck_assert_msg(o.type == MSGPACK_OBJECT_ARRAY && o.via.array.size == 3, "not a response envelope");
	const msgpack_object *e = o.via.array.ptr;
	ck_assert(e[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER || e[0].type == MSGPACK_OBJECT_NIL);
	*id = e[0].type == MSGPACK_OBJECT_NIL ? UINT64_MAX : e[0].via.u64;
	*code = 0;
	if (e[1].type != MSGPACK_OBJECT_NIL) {
		ck_assert_msg(e[1].type == MSGPACK_OBJECT_MAP, "error is not a map");
		int64_t c = 0;
		ck_assert_msg(codec_get_int(&e[1], "code", &c) == 1, "error map without a code");
		*code = c;
	}
	msgpack_zone_destroy(&z);
	free(buf);
	return true;
}

/* Mutated versions of valid requests (the frame length always matches the
 * payload, so most of them decode and reach the handlers). The daemon must
 * answer or reject each and never crash; ASan builds check its memory use,
 * and the teardown checks it still stops cleanly.
 *
 * Some mutations turn a byte into an array32/map32 header with a huge
 * count: msgpack-c then asks malloc for count * 24 (or 48) bytes up front,
 * tens of GiB for a 10-byte frame. malloc fails and the daemon answers
 * BAD_FRAME; under ASan that needs allocator_may_return_null=1 (set in
 * daemon_start_with), since ASan aborts on such a request by default. */
START_TEST(e2e_fuzz_requests)
{
	static const char *const seeds[][2] = {
		{"hello", "{\"version\": 1, \"client\": \"fuzz\"}"},
		{"ping", "{}"},
		{"stats", "{\"cluster\": \"main\"}"},
		{"poll_reports", "{\"max\": 10, \"timeout_ms\": 0}"},
		{"flush", "{\"timeout_ms\": 0}"},
		{"produce", "{\"topic\": \"e2e-fuzz\", \"ack\": \"none\", \"value\": \"v\", \"key\": \"k\", \"partition\": 0}"},
		{"produce", "{\"topic\": \"e2e-fuzz\", \"ack\": \"report\", \"messages\": [\"a\", {\"value\": \"b\", \"key\": "
			    "\"c\", \"headers\": [[\"h\", \"v\"], [\"n\", null]], \"timestamp\": 1700000000000}]}"},
		{"produce", "{\"topic\": \"e2e-fuzz\", \"ack\": \"wait\", \"partitioner\": \"pykafka_hashing\", \"messages\": "
			    "[{\"key\": \"k1\", \"value\": \"x\"}, {\"key\": null, \"value\": null}]}"},
	};
	enum { NSEEDS = sizeof(seeds) / sizeof(seeds[0]), ITER = 3000 };
	char *frames[NSEEDS];
	size_t lens[NSEEDS];
	for (int i = 0; i < NSEEDS; i++)
		frames[i] = request_frame(7, seeds[i][0], seeds[i][1], &lens[i]);
	fuzz_rng_state = UINT64_C(0x6b61666b61640003);
	int fd = conn_open();
	int reconnects = 0, answered = 0;
	char buf[1024];
	for (int it = 0; it < ITER; it++) {
		int s = (int)(fuzz_rng() % NSEEDS);
		size_t len = lens[s] - 4;
		memcpy(buf + 4, frames[s] + 4, len);
		int muts = 1 + (int)(fuzz_rng() % 3);
		for (int m = 0; m < muts; m++) {
			size_t pos = fuzz_rng() % len;
			switch (fuzz_rng() % 5) {
			case 0:
				buf[4 + pos] = (char)fuzz_rng();
				break;
			case 1:
				buf[4 + pos] ^= (char)(1u << (fuzz_rng() % 8));
				break;
			case 2: /* small integers and type bytes are the interesting ones */
				buf[4 + pos] = (char)(uint8_t[]){0x00, 0x01, 0x7f, 0xff, 0xc0, 0xc2, 0xc3, 0x90, 0x80, 0xa0,
								 0xcc, 0xd0, 0xcf, 0xd3}[fuzz_rng() % 14];
				break;
			case 3:
				if (len > 2)
					len--;
				break;
			default:
				if (len < sizeof(buf) - 8)
					buf[4 + len++] = (char)fuzz_rng();
			}
		}
		buf[0] = (char)(len >> 24);
		buf[1] = (char)(len >> 16);
		buf[2] = (char)(len >> 8);
		buf[3] = (char)len;
		size_t mlen;
		uint64_t marker = UINT64_C(0xF0000000) + (uint64_t)it;
		char *ping = request_frame(marker, "ping", NULL, &mlen);
		memcpy(buf + 4 + len, ping, mlen);
		free(ping);
		send_all(fd, buf, 4 + len + mlen);
		/* read until the marker's answer, or EOF after a BAD_FRAME */
		int64_t last_code = 0;
		for (;;) {
			uint64_t id;
			int64_t code;
			if (!recv_raw(fd, &id, &code)) {
				ck_assert_msg(last_code == KD_ERR_BAD_FRAME, "iteration %d: closed without BAD_FRAME", it);
				close(fd);
				fd = conn_open();
				reconnects++;
				break;
			}
			ck_assert_msg(code == 0 || (code >= KD_ERR_BAD_FRAME && code < KD_ERR_MAX_DAEMON) ||
					      code >= KD_ERR_KAFKA_BASE - 1000,
				      "iteration %d: error code %lld", it, (long long)code);
			last_code = code;
			if (id == marker) {
				ck_assert_int_eq(code, 0);
				answered++;
				break;
			}
		}
	}
	for (int i = 0; i < NSEEDS; i++)
		free(frames[i]);
	ping_ok(fd, 1);
	close(fd);
	/* both kinds of outcome happened */
	ck_assert_int_gt(reconnects, ITER / 10);
	ck_assert_int_gt(answered, ITER / 4);
	int st = conn_open();
	ck_assert_int_ge(stats_counter(st, 1, "requests"), 2 * answered);
	close(st);
}
END_TEST

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	remove(path); /* best effort */
	return 0;
}

int main(void)
{
	Suite *s = suite_create("dispatch");
	TCase *tc = tcase_create("conformance");
	tcase_add_test(tc, ops_json_matches_op_table);
	tcase_add_test(tc, spec_has_a_section_per_op);
	tcase_add_test(tc, error_codes_match_ops_json_and_spec);
	suite_add_tcase(s, tc);

	tc = tcase_create("e2e");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, e2e_setup, e2e_teardown);
	tcase_add_test(tc, e2e_hello_and_ping);
	tcase_add_test(tc, e2e_unknown_op);
	tcase_add_test(tc, e2e_error_message_utf8);
	tcase_add_test(tc, e2e_invalid_argument);
	tcase_add_test(tc, e2e_bad_envelope);
	tcase_add_test(tc, e2e_produce_wait);
	tcase_add_test(tc, e2e_produce_report_and_poll);
	tcase_add_test(tc, e2e_bad_frame);
	tcase_add_test(tc, e2e_orphan_reports);
	tcase_add_test(tc, e2e_metadata);
	tcase_add_test(tc, e2e_too_large_batch);
	tcase_add_test(tc, e2e_framing_edge_cases);
	tcase_add_test(tc, e2e_pipelining_backpressure);
	tcase_add_test(tc, e2e_max_connections);
	tcase_add_test(tc, e2e_max_pending_holds_produce);
	tcase_add_test(tc, e2e_disconnect_with_held_produce);
	tcase_add_test(tc, e2e_1000_connections);
	tcase_add_test(tc, e2e_fuzz_requests);
	tcase_add_test(tc, e2e_sigterm_with_messages_in_flight);
	suite_add_tcase(s, tc);

	snprintf(base_dir, sizeof(base_dir), "/tmp/kafkad-e2e-XXXXXX");
	if (!mkdtemp(base_dir)) {
		perror("mkdtemp");
		return EXIT_FAILURE;
	}
	int rc = tu_run_suite(s);
	nftw(base_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
	return rc;
}
