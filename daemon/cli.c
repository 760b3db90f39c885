/* kafkad-cli: the operator's tool on a host. Talks to kafkad over its socket
 * with the same codec as the daemon. Exit codes: 0 success, 1 the operation
 * failed (an error from the daemon or Kafka, or undelivered messages),
 * 2 usage error, 3 cannot reach the daemon. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"

#define EXIT_FAILED 1
#define EXIT_USAGE 2
#define EXIT_CONNECT 3
#define PRODUCE_BATCH 1000

static const char *usage_text =
	"usage: kafkad-cli [-s SOCKET] [-C CLUSTER] COMMAND [ARGS]\n"
	"\n"
	"  -s, --socket PATH    daemon socket (default $KAFKAD_SOCKET, else /run/kafkad/kafkad.sock)\n"
	"  -C, --cluster NAME   cluster to use (default: the daemon's default cluster)\n"
	"  -h, --help           this help\n"
	"\n"
	"commands:\n"
	"  ping [-c COUNT]                      round trips to the daemon, with their times\n"
	"  stats [--json]                       daemon counters and librdkafka statistics\n"
	"  metadata [--json] [TOPIC...]         brokers, topics, partitions and leaders\n"
	"  produce TOPIC [options]              records from stdin, one per line\n"
	"      -d, --delimiter CHAR             record delimiter (default newline; \\0 for NUL)\n"
	"      -k, --key-separator STR          split each record into key STR value at the first STR\n"
	"      -H, --header NAME=VALUE          add a header to every record (repeatable)\n"
	"      -p, --partition N                explicit partition (default: the partitioner)\n"
	"      -P, --partitioner NAME           random, consistent, consistent_random, murmur2, murmur2_random,\n"
	"                                       fnv1a, pykafka_hashing\n"
	"      --sync                           wait for each batch to be acknowledged; print partition and\n"
	"                                       offset of each record\n"
	"      (default: asynchronous with delivery reports; prints a summary)\n"
	"  consume TOPIC [options]              print messages\n"
	"      -g, --group GROUP                join GROUP (Kafka-coordinated) instead of reading partitions\n"
	"      -p, --partitions LIST            comma-separated partitions (default all; not with -g)\n"
	"      -o, --offset earliest|latest|N   where to start when nothing is committed (N: simple mode)\n"
	"      -c, --count N                    stop after N messages\n"
	"      -e, --exit-at-end                stop when every partition reached its end\n"
	"      -t, --timeout MS                 stop after MS without messages\n"
	"      -f, --format FMT                 output format: %t topic, %p partition, %o offset, %k key,\n"
	"                                       %v value, %T timestamp, %h headers, \\n \\t (default \"%v\\n\")\n"
	"      --commit                         commit what was printed before exiting (needs -g)\n"
	"  commit TOPIC -g GROUP PARTITION:OFFSET...\n"
	"                                       commit explicit offsets for GROUP\n"
	"  offsets TOPIC [-t TIME_MS]           each partition's low and high watermark; with -t, also the\n"
	"                                       first offset at or after TIME_MS (ms since the epoch; -1 if\n"
	"                                       every record is older)\n"
	"\n"
	"exit codes: 0 success, 1 the operation failed, 2 usage error, 3 cannot reach the daemon\n";

static void die(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void die(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("kafkad-cli: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	exit(code);
}

/* --- a blocking client ------------------------------------------------------ */

typedef struct cli {
	int fd;
	uint64_t next_id;
	const char *cluster;
	msgpack_unpacker up;
	msgpack_unpacked res; /* the last response */
	uint32_t max_batch;
} cli;

static void cli_connect(cli *c, const char *path)
{
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		die(EXIT_USAGE, "socket path too long: %s", path);
	strcpy(sa.sun_path, path);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		die(EXIT_CONNECT, "cannot connect to kafkad at %s: %s", path, strerror(errno));
	msgpack_unpacker_init(&c->up, 1 << 16);
	msgpack_unpacked_init(&c->res);
	c->max_batch = PRODUCE_BATCH;
}

static void send_all(cli *c, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(c->fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die(EXIT_CONNECT, "connection to kafkad lost: %s", strerror(errno));
		buf += n;
		len -= (size_t)n;
	}
}

static void read_all(cli *c, char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = read(c->fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die(EXIT_CONNECT, "connection to kafkad lost%s%s", n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
		buf += n;
		len -= (size_t)n;
	}
}

/* Starts a request: [id, op, args-map-of-n]; the caller packs n pairs. */
static uint64_t begin(cli *c, kd_writer *w, const char *op, uint32_t n)
{
	writer_init(w);
	uint64_t id = ++c->next_id;
	msgpack_pack_array(&w->pk, 3);
	msgpack_pack_uint64(&w->pk, id);
	pack_cstr(&w->pk, op);
	msgpack_pack_map(&w->pk, n + (c->cluster ? 1 : 0));
	if (c->cluster)
		pack_kv_str(&w->pk, "cluster", c->cluster);
	return id;
}

/* Sends the request and waits for its response; returns the result object or
 * exits with the daemon's error unless errmap is given. */
static const msgpack_object *call(cli *c, kd_writer *w, uint64_t id, const msgpack_object **errmap)
{
	size_t len;
	char *buf = writer_take(w, &len);
	send_all(c, buf, len);
	free(buf);
	for (;;) {
		uint8_t hdr[4];
		read_all(c, (char *)hdr, 4);
		uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
		msgpack_unpacker_reserve_buffer(&c->up, n);
		read_all(c, msgpack_unpacker_buffer(&c->up), n);
		msgpack_unpacker_buffer_consumed(&c->up, n);
		if (msgpack_unpacker_next(&c->up, &c->res) != MSGPACK_UNPACK_SUCCESS)
			die(EXIT_FAILED, "malformed response from kafkad");
		const msgpack_object *o = &c->res.data;
		if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 3)
			die(EXIT_FAILED, "malformed response from kafkad");
		const msgpack_object *e = o->via.array.ptr;
		if (e[0].type == MSGPACK_OBJECT_POSITIVE_INTEGER && e[0].via.u64 != id)
			continue; /* not ours (cannot happen: one request at a time) */
		if (e[1].type != MSGPACK_OBJECT_NIL) {
			if (errmap) {
				*errmap = &e[1];
				return NULL;
			}
			const char *name = "?", *msg = "";
			uint32_t nl = 1, ml = 0;
			codec_get_str(&e[1], "name", &name, &nl);
			codec_get_str(&e[1], "message", &msg, &ml);
			die(EXIT_FAILED, "%.*s: %.*s", (int)nl, name, (int)ml, msg);
		}
		if (errmap)
			*errmap = NULL;
		return &e[2];
	}
}

static void hello(cli *c)
{
	kd_writer w;
	uint64_t id = begin(c, &w, "hello", 2);
	pack_kv_int(&w.pk, "version", 1);
	pack_kv_str(&w.pk, "client", "kafkad-cli");
	const msgpack_object *r = call(c, &w, id, NULL);
	int64_t mb;
	if (codec_get_int(r, "max_batch", &mb) > 0 && mb > 0 && mb < PRODUCE_BATCH)
		c->max_batch = (uint32_t)mb;
}

/* --- msgpack → JSON ------------------------------------------------------- */

static json_t *to_json(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return json_null();
	case MSGPACK_OBJECT_BOOLEAN:
		return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_integer(o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return json_real(o->via.f64);
	case MSGPACK_OBJECT_STR: {
		json_t *s = json_stringn(o->via.str.ptr, o->via.str.size);
		return s ? s : json_string("<invalid utf-8>");
	}
	case MSGPACK_OBJECT_BIN: {
		json_t *s = json_stringn(o->via.bin.ptr, o->via.bin.size);
		return s ? s : json_string("<binary>");
	}
	case MSGPACK_OBJECT_ARRAY: {
		json_t *a = json_array();
		for (uint32_t i = 0; i < o->via.array.size; i++)
			json_array_append_new(a, to_json(&o->via.array.ptr[i]));
		return a;
	}
	case MSGPACK_OBJECT_MAP: {
		json_t *m = json_object();
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			char key[256];
			if (kv->key.type != MSGPACK_OBJECT_STR)
				continue;
			snprintf(key, sizeof(key), "%.*s", (int)kv->key.via.str.size, kv->key.via.str.ptr);
			json_object_set_new(m, key, to_json(&kv->val));
		}
		return m;
	}
	default:
		return json_null();
	}
}

static void print_json(const msgpack_object *o)
{
	json_t *j = to_json(o);
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	puts(s ? s : "null");
	free(s);
	json_decref(j);
}

/* --- commands ------------------------------------------------------------- */

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmd_ping(cli *c, int argc, char **argv)
{
	long count = 1;
	int ch;
	static const struct option o[] = {{"count", required_argument, NULL, 'c'}, {NULL, 0, NULL, 0}};
	while ((ch = getopt_long(argc, argv, "c:", o, NULL)) != -1) {
		if (ch != 'c' || (count = strtol(optarg, NULL, 10)) < 1)
			die(EXIT_USAGE, "ping [-c COUNT]");
	}
	for (long i = 0; i < count; i++) {
		kd_writer w;
		uint64_t id = begin(c, &w, "ping", 0);
		double t0 = now_us();
		call(c, &w, id, NULL);
		printf("pong from kafkad: %.1f us\n", now_us() - t0);
	}
	return 0;
}

static void print_map_human(const msgpack_object *m, int indent)
{
	for (uint32_t i = 0; m->type == MSGPACK_OBJECT_MAP && i < m->via.map.size; i++) {
		const msgpack_object_kv *kv = &m->via.map.ptr[i];
		printf("%*s%.*s:", indent, "", (int)kv->key.via.str.size, kv->key.via.str.ptr);
		if (kv->val.type == MSGPACK_OBJECT_MAP) {
			putchar('\n');
			print_map_human(&kv->val, indent + 2);
		} else if (kv->val.type == MSGPACK_OBJECT_STR && kv->val.via.str.size > 80) {
			printf(" (%u bytes of JSON; see --json)\n", kv->val.via.str.size);
		} else {
			json_t *j = to_json(&kv->val);
			char *s = json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT);
			printf(" %s\n", s ? s : "");
			free(s);
			json_decref(j);
		}
	}
}

static bool has_flag(int argc, char **argv, const char *flag)
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], flag) == 0)
			return true;
	return false;
}

static int cmd_stats(cli *c, int argc, char **argv)
{
	kd_writer w;
	uint64_t id = begin(c, &w, "stats", 0);
	const msgpack_object *r = call(c, &w, id, NULL);
	if (has_flag(argc, argv, "--json"))
		print_json(r);
	else
		print_map_human(r, 0);
	return 0;
}

static int cmd_metadata(cli *c, int argc, char **argv)
{
	bool json = false;
	int ntopics = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--json") == 0)
			json = true;
		else if (argv[i][0] == '-')
			die(EXIT_USAGE, "metadata [--json] [TOPIC...]");
		else
			ntopics++;
	}
	kd_writer w;
	uint64_t id = begin(c, &w, "metadata", ntopics ? 1 : 0);
	if (ntopics) {
		pack_cstr(&w.pk, "topics");
		msgpack_pack_array(&w.pk, (size_t)ntopics);
		for (int i = 1; i < argc; i++)
			if (argv[i][0] != '-')
				pack_cstr(&w.pk, argv[i]);
	}
	const msgpack_object *r = call(c, &w, id, NULL);
	if (json) {
		print_json(r);
		return 0;
	}
	const msgpack_object_array *brokers = NULL, *topics = NULL;
	codec_get_array(r, "brokers", &brokers);
	codec_get_array(r, "topics", &topics);
	int rc = 0;
	printf("%u brokers:\n", brokers ? brokers->size : 0);
	for (uint32_t i = 0; brokers && i < brokers->size; i++) {
		int64_t bid = 0, port = 0;
		const char *host = "";
		uint32_t hl = 0;
		codec_get_int(&brokers->ptr[i], "id", &bid);
		codec_get_int(&brokers->ptr[i], "port", &port);
		codec_get_str(&brokers->ptr[i], "host", &host, &hl);
		printf("  broker %lld at %.*s:%lld\n", (long long)bid, (int)hl, host, (long long)port);
	}
	printf("%u topics:\n", topics ? topics->size : 0);
	for (uint32_t i = 0; topics && i < topics->size; i++) {
		const msgpack_object *t = &topics->ptr[i];
		const char *name = "";
		uint32_t nl = 0;
		codec_get_str(t, "name", &name, &nl);
		const msgpack_object *err = codec_map_get(t, "error");
		const msgpack_object_array *parts = NULL;
		codec_get_array(t, "partitions", &parts);
		if (err) {
			const char *en = "";
			uint32_t enl = 0;
			codec_get_str(err, "name", &en, &enl);
			printf("  topic \"%.*s\": error %.*s\n", (int)nl, name, (int)enl, en);
			rc = EXIT_FAILED;
			continue;
		}
		printf("  topic \"%.*s\" with %u partitions:\n", (int)nl, name, parts ? parts->size : 0);
		for (uint32_t j = 0; parts && j < parts->size; j++) {
			int64_t pid = 0, leader = 0;
			codec_get_int(&parts->ptr[j], "id", &pid);
			codec_get_int(&parts->ptr[j], "leader", &leader);
			printf("    partition %lld, leader %lld\n", (long long)pid, (long long)leader);
		}
	}
	return rc;
}

/* Reads one record from stdin up to delim; returns its length or -1 at EOF. */
static ssize_t read_record(char **buf, size_t *cap, int delim)
{
	size_t n = 0;
	int ch;
	while ((ch = getchar()) != EOF && ch != delim) {
		if (n + 1 >= *cap) {
			*cap = *cap ? *cap * 2 : 4096;
			*buf = realloc(*buf, *cap);
			if (!*buf)
				die(EXIT_FAILED, "out of memory");
		}
		(*buf)[n++] = (char)ch;
	}
	if (ch == EOF && n == 0)
		return -1;
	return (ssize_t)n;
}

typedef struct record {
	char *data;
	size_t len;
	size_t key_len; /* with a key separator: key is data[0..key_len), value after the separator */
	bool has_key;
} record;

static void pack_records(cli *c, kd_writer *w, const char *topic, const char *ack, const char *partitioner,
			 long partition, char **headers, int nheaders, const record *recs, size_t n, size_t seplen,
			 uint64_t *id)
{
	*id = begin(c, w, "produce", 3 + (partitioner ? 1 : 0));
	pack_kv_str(&w->pk, "topic", topic);
	pack_kv_str(&w->pk, "ack", ack);
	if (partitioner)
		pack_kv_str(&w->pk, "partitioner", partitioner);
	pack_cstr(&w->pk, "messages");
	msgpack_pack_array(&w->pk, n);
	for (size_t i = 0; i < n; i++) {
		const record *r = &recs[i];
		const char *val = r->has_key ? r->data + r->key_len + seplen : r->data;
		size_t vlen = r->has_key ? r->len - r->key_len - seplen : r->len;
		msgpack_pack_map(&w->pk, 1 + (r->has_key ? 1 : 0) + (nheaders ? 1 : 0) + (partition >= 0 ? 1 : 0));
		pack_cstr(&w->pk, "value");
		msgpack_pack_bin(&w->pk, vlen);
		msgpack_pack_bin_body(&w->pk, val, vlen);
		if (r->has_key) {
			pack_cstr(&w->pk, "key");
			msgpack_pack_bin(&w->pk, r->key_len);
			msgpack_pack_bin_body(&w->pk, r->data, r->key_len);
		}
		if (nheaders) {
			pack_cstr(&w->pk, "headers");
			msgpack_pack_array(&w->pk, (size_t)nheaders);
			for (int h = 0; h < nheaders; h++) {
				const char *eq = strchr(headers[h], '=');
				msgpack_pack_array(&w->pk, 2);
				msgpack_pack_str(&w->pk, (size_t)(eq - headers[h]));
				msgpack_pack_str_body(&w->pk, headers[h], (size_t)(eq - headers[h]));
				msgpack_pack_bin(&w->pk, strlen(eq + 1));
				msgpack_pack_bin_body(&w->pk, eq + 1, strlen(eq + 1));
			}
		}
		if (partition >= 0)
			pack_kv_int(&w->pk, "partition", partition);
	}
}

/* Counts delivered/failed messages in a list of report runs. */
static void count_runs(const msgpack_object *runs, uint64_t *ok, uint64_t *failed, char *last_err, size_t errlen)
{
	for (uint32_t i = 0; runs && runs->type == MSGPACK_OBJECT_ARRAY && i < runs->via.array.size; i++) {
		const msgpack_object *r = runs->via.array.ptr[i].via.array.ptr;
		uint64_t count = r[1].via.u64;
		if (r[4].type == MSGPACK_OBJECT_NIL) {
			*ok += count;
		} else {
			*failed += count;
			const char *m = "";
			uint32_t ml = 0;
			codec_get_str(&r[4], "message", &m, &ml);
			snprintf(last_err, errlen, "%.*s", (int)ml, m);
		}
	}
}

static int cmd_produce(cli *c, int argc, char **argv)
{
	int delim = '\n';
	const char *sep = NULL, *partitioner = NULL;
	char *headers[64];
	int nheaders = 0;
	long partition = -1;
	bool sync = false;
	static const struct option o[] = {
		{"delimiter", required_argument, NULL, 'd'}, {"key-separator", required_argument, NULL, 'k'},
		{"header", required_argument, NULL, 'H'},    {"partition", required_argument, NULL, 'p'},
		{"partitioner", required_argument, NULL, 'P'}, {"sync", no_argument, NULL, 'S'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "d:k:H:p:P:", o, NULL)) != -1) {
		switch (ch) {
		case 'd':
			delim = strcmp(optarg, "\\0") == 0 ? 0 : strcmp(optarg, "\\n") == 0 ? '\n' : optarg[0];
			break;
		case 'k':
			if (!optarg[0])
				die(EXIT_USAGE, "--key-separator must not be empty");
			sep = optarg;
			break;
		case 'H':
			if (!strchr(optarg, '=') || nheaders == 64)
				die(EXIT_USAGE, "--header NAME=VALUE (at most 64)");
			headers[nheaders++] = optarg;
			break;
		case 'p':
			partition = strtol(optarg, NULL, 10);
			if (partition < 0)
				die(EXIT_USAGE, "--partition must be >= 0");
			break;
		case 'P':
			partitioner = optarg;
			break;
		case 'S':
			sync = true;
			break;
		default:
			die(EXIT_USAGE, "see kafkad-cli --help");
		}
	}
	if (optind != argc - 1)
		die(EXIT_USAGE, "produce TOPIC [options] < records");
	const char *topic = argv[optind];
	record *recs = calloc(c->max_batch, sizeof(*recs));
	size_t seplen = sep ? strlen(sep) : 0;
	uint64_t sent = 0, ok = 0, failed = 0;
	char last_err[512] = "";
	bool eof = false;
	while (!eof) {
		size_t n = 0;
		while (n < c->max_batch) {
			char *buf = NULL;
			size_t cap = 0;
			ssize_t len = read_record(&buf, &cap, delim);
			if (len < 0) {
				eof = true;
				free(buf);
				break;
			}
			recs[n] = (record){.data = buf ? buf : strdup(""), .len = (size_t)len};
			if (sep) {
				char *at = memmem(recs[n].data, recs[n].len, sep, seplen);
				if (at) {
					recs[n].has_key = true;
					recs[n].key_len = (size_t)(at - recs[n].data);
				}
			}
			n++;
		}
		if (n == 0)
			break;
		kd_writer w;
		uint64_t id;
		pack_records(c, &w, topic, sync ? "wait" : "report", partitioner, partition, headers, nheaders, recs, n,
			     seplen, &id);
		const msgpack_object *r = call(c, &w, id, NULL);
		sent += n;
		if (sync) {
			const msgpack_object_array *res = NULL;
			codec_get_array(r, "results", &res);
			for (uint32_t i = 0; res && i < res->size; i++) {
				const msgpack_object *e = res->ptr[i].via.array.ptr;
				if (e[2].type == MSGPACK_OBJECT_NIL) {
					ok++;
					printf("partition %lld offset %lld\n", (long long)e[0].via.i64, (long long)e[1].via.i64);
				} else {
					failed++;
					const char *m = "";
					uint32_t ml = 0;
					codec_get_str(&e[2], "message", &m, &ml);
					fprintf(stderr, "kafkad-cli: record %llu failed: %.*s\n", (unsigned long long)(sent - n + i + 1),
						(int)ml, m);
				}
			}
		} else {
			count_runs(codec_map_get(r, "reports"), &ok, &failed, last_err, sizeof(last_err));
		}
		for (size_t i = 0; i < n; i++)
			free(recs[i].data);
	}
	free(recs);
	/* collect the outstanding reports */
	while (!sync && ok + failed < sent) {
		kd_writer w;
		uint64_t id = begin(c, &w, "poll_reports", 1);
		pack_kv_int(&w.pk, "timeout_ms", 30000);
		const msgpack_object *r = call(c, &w, id, NULL);
		const msgpack_object *runs = codec_map_get(r, "reports");
		if (!runs || runs->via.array.size == 0)
			die(EXIT_FAILED, "no delivery reports for 30 s (%llu of %llu outstanding)",
			    (unsigned long long)(sent - ok - failed), (unsigned long long)sent);
		count_runs(runs, &ok, &failed, last_err, sizeof(last_err));
	}
	fprintf(stderr, "%llu records: %llu delivered, %llu failed%s%s\n", (unsigned long long)sent,
		(unsigned long long)ok, (unsigned long long)failed, failed ? " (last error: " : "",
		failed ? last_err : "");
	if (failed)
		fputs(")\n", stderr);
	return failed ? EXIT_FAILED : 0;
}

static volatile sig_atomic_t stop_requested;
static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void print_bytes(const char *p, size_t n)
{
	fwrite(p, 1, n, stdout);
}

static void print_message(const char *fmt, const char *topic, uint32_t tlen, const msgpack_object *m)
{
	const msgpack_object *f = m->via.array.ptr;
	for (const char *s = fmt; *s; s++) {
		if (*s == '\\' && s[1]) {
			s++;
			putchar(*s == 'n' ? '\n' : *s == 't' ? '\t' : *s);
			continue;
		}
		if (*s != '%' || !s[1]) {
			putchar(*s);
			continue;
		}
		switch (*++s) {
		case 't':
			print_bytes(topic, tlen);
			break;
		case 'p':
			printf("%lld", (long long)f[1].via.i64);
			break;
		case 'o':
			printf("%lld", (long long)f[2].via.i64);
			break;
		case 'T':
			printf("%lld", (long long)f[3].via.i64);
			break;
		case 'k':
			if (f[4].type == MSGPACK_OBJECT_BIN)
				print_bytes(f[4].via.bin.ptr, f[4].via.bin.size);
			break;
		case 'v':
			if (f[5].type == MSGPACK_OBJECT_BIN)
				print_bytes(f[5].via.bin.ptr, f[5].via.bin.size);
			break;
		case 'h':
			for (uint32_t i = 0; f[6].type == MSGPACK_OBJECT_ARRAY && i < f[6].via.array.size; i++) {
				const msgpack_object *h = f[6].via.array.ptr[i].via.array.ptr;
				printf("%s%.*s=", i ? "," : "", (int)h[0].via.str.size, h[0].via.str.ptr);
				if (h[1].type == MSGPACK_OBJECT_BIN)
					print_bytes(h[1].via.bin.ptr, h[1].via.bin.size);
			}
			break;
		case '%':
			putchar('%');
			break;
		default:
			putchar('%');
			putchar(*s);
		}
	}
}

static int cmd_consume(cli *c, int argc, char **argv)
{
	const char *group = NULL, *parts = NULL, *offset = NULL, *fmt = "%v\\n";
	long count = -1, timeout_ms = -1;
	bool exit_at_end = false, commit = false;
	static const struct option o[] = {
		{"group", required_argument, NULL, 'g'},  {"partitions", required_argument, NULL, 'p'},
		{"offset", required_argument, NULL, 'o'}, {"count", required_argument, NULL, 'c'},
		{"exit-at-end", no_argument, NULL, 'e'},  {"timeout", required_argument, NULL, 't'},
		{"format", required_argument, NULL, 'f'}, {"commit", no_argument, NULL, 'M'},
		{NULL, 0, NULL, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "g:p:o:c:et:f:", o, NULL)) != -1) {
		switch (ch) {
		case 'g':
			group = optarg;
			break;
		case 'p':
			parts = optarg;
			break;
		case 'o':
			offset = optarg;
			break;
		case 'c':
			count = strtol(optarg, NULL, 10);
			break;
		case 'e':
			exit_at_end = true;
			break;
		case 't':
			timeout_ms = strtol(optarg, NULL, 10);
			break;
		case 'f':
			fmt = optarg;
			break;
		case 'M':
			commit = true;
			break;
		default:
			die(EXIT_USAGE, "see kafkad-cli --help");
		}
	}
	if (optind != argc - 1)
		die(EXIT_USAGE, "consume TOPIC [options]");
	if (group && parts)
		die(EXIT_USAGE, "--partitions reads partitions directly; it does not go with --group");
	if (commit && !group)
		die(EXIT_USAGE, "--commit needs --group");
	bool numeric = offset && strcmp(offset, "earliest") != 0 && strcmp(offset, "latest") != 0;
	if (numeric && group)
		die(EXIT_USAGE, "a numeric --offset reads partitions directly; it does not go with --group");
	const char *topic = argv[optind];
	kd_writer w;
	int32_t plist[1024];
	uint32_t np = 0;
	if (parts) {
		char *copy = strdup(parts), *save = NULL;
		for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
			if (np == 1024)
				die(EXIT_USAGE, "too many partitions");
			plist[np++] = (int32_t)strtol(t, NULL, 10);
		}
		free(copy);
	}
	if (numeric && !np)
		die(EXIT_USAGE, "a numeric --offset needs --partitions");
	uint64_t id = begin(c, &w, "consumer_open", 3 + (group ? 1 : 0) + (np ? 1 : 0) + (numeric ? 1 : 0));
	pack_kv_str(&w.pk, "mode", group ? "group" : "simple");
	pack_cstr(&w.pk, "topics");
	msgpack_pack_array(&w.pk, 1);
	pack_cstr(&w.pk, topic);
	pack_kv_str(&w.pk, "auto_offset_reset", offset && strcmp(offset, "latest") == 0 ? "latest" : "earliest");
	if (group)
		pack_kv_str(&w.pk, "group", group);
	if (np) {
		pack_cstr(&w.pk, "partitions");
		msgpack_pack_array(&w.pk, np);
		for (uint32_t i = 0; i < np; i++)
			msgpack_pack_int32(&w.pk, plist[i]);
	}
	if (numeric) {
		long long off = strtoll(offset, NULL, 10);
		pack_cstr(&w.pk, "offsets");
		msgpack_pack_array(&w.pk, np);
		for (uint32_t i = 0; i < np; i++) {
			msgpack_pack_array(&w.pk, 2);
			msgpack_pack_int32(&w.pk, plist[i]);
			msgpack_pack_int64(&w.pk, off);
		}
	}
	const msgpack_object *r = call(c, &w, id, NULL);
	int64_t handle = 0;
	codec_get_int(r, "handle", &handle);
	signal(SIGINT, on_stop);
	signal(SIGTERM, on_stop);
	long printed = 0;
	uint32_t held = 0;
	/* partitions at their end: an eof event sets, a message clears */
	static bool at_end[1 << 16];
	double idle_since = now_us();
	while (!stop_requested && (count < 0 || printed < count)) {
		id = begin(c, &w, "consume", 3);
		pack_kv_int(&w.pk, "handle", handle);
		pack_kv_int(&w.pk, "timeout_ms", 500);
		pack_kv_int(&w.pk, "max", count < 0 ? 1000 : (count - printed < 1000 ? count - printed : 1000));
		r = call(c, &w, id, NULL);
		const msgpack_object_array *topics = NULL, *msgs = NULL, *events = NULL;
		codec_get_array(r, "topics", &topics);
		codec_get_array(r, "messages", &msgs);
		codec_get_array(r, "events", &events);
		for (uint32_t i = 0; events && i < events->size; i++) {
			const char *type = "";
			uint32_t tl = 0;
			codec_get_str(&events->ptr[i], "type", &type, &tl);
			if (codec_str_eq(type, tl, "assigned"))
				held++;
			else if (codec_str_eq(type, tl, "revoked"))
				held--;
			else if (codec_str_eq(type, tl, "eof")) {
				int64_t p = -1;
				codec_get_int(&events->ptr[i], "partition", &p);
				if (p >= 0 && p < (1 << 16))
					at_end[p] = true;
			}
		}
		for (uint32_t i = 0; msgs && i < msgs->size; i++) {
			const msgpack_object *m = &msgs->ptr[i];
			const msgpack_object *t = &topics->ptr[m->via.array.ptr[0].via.u64];
			print_message(fmt, t->via.str.ptr, t->via.str.size, m);
			printed++;
			uint64_t p = m->via.array.ptr[1].via.u64;
			if (p < (1 << 16))
				at_end[p] = false;
		}
		fflush(stdout);
		if (msgs && msgs->size > 0)
			idle_since = now_us();
		uint32_t ended = 0;
		for (uint32_t p = 0; exit_at_end && p < (1 << 16); p++)
			ended += at_end[p];
		if (exit_at_end && held > 0 && ended >= held)
			break;
		if (timeout_ms >= 0 && now_us() - idle_since > (double)timeout_ms * 1000)
			break;
	}
	int rc = 0;
	if (commit) {
		id = begin(c, &w, "commit", 1);
		pack_kv_int(&w.pk, "handle", handle);
		const msgpack_object *err = NULL;
		call(c, &w, id, &err);
		if (err) {
			fprintf(stderr, "kafkad-cli: commit failed\n");
			rc = EXIT_FAILED;
		}
	}
	id = begin(c, &w, "consumer_close", 1);
	pack_kv_int(&w.pk, "handle", handle);
	call(c, &w, id, NULL);
	return rc;
}

static int cmd_commit(cli *c, int argc, char **argv)
{
	const char *group = NULL;
	static const struct option o[] = {{"group", required_argument, NULL, 'g'}, {NULL, 0, NULL, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "g:", o, NULL)) != -1) {
		if (ch != 'g')
			die(EXIT_USAGE, "commit TOPIC -g GROUP PARTITION:OFFSET...");
		group = optarg;
	}
	if (!group || argc - optind < 2)
		die(EXIT_USAGE, "commit TOPIC -g GROUP PARTITION:OFFSET...");
	const char *topic = argv[optind];
	int n = argc - optind - 1;
	int32_t *parts = calloc((size_t)n, sizeof(*parts));
	int64_t *offs = calloc((size_t)n, sizeof(*offs));
	for (int i = 0; i < n; i++) {
		char *colon = strchr(argv[optind + 1 + i], ':');
		if (!colon)
			die(EXIT_USAGE, "expected PARTITION:OFFSET, got '%s'", argv[optind + 1 + i]);
		parts[i] = (int32_t)strtol(argv[optind + 1 + i], NULL, 10);
		offs[i] = strtoll(colon + 1, NULL, 10);
	}
	kd_writer w;
	uint64_t id = begin(c, &w, "consumer_open", 4);
	pack_kv_str(&w.pk, "mode", "simple");
	pack_kv_str(&w.pk, "topic", topic);
	pack_kv_str(&w.pk, "group", group);
	pack_cstr(&w.pk, "partitions");
	msgpack_pack_array(&w.pk, (size_t)n);
	for (int i = 0; i < n; i++)
		msgpack_pack_int32(&w.pk, parts[i]);
	int64_t handle = 0;
	codec_get_int(call(c, &w, id, NULL), "handle", &handle);
	id = begin(c, &w, "commit", 2);
	pack_kv_int(&w.pk, "handle", handle);
	pack_cstr(&w.pk, "offsets");
	msgpack_pack_array(&w.pk, (size_t)n);
	for (int i = 0; i < n; i++) {
		msgpack_pack_array(&w.pk, 3);
		pack_cstr(&w.pk, topic);
		msgpack_pack_int32(&w.pk, parts[i]);
		msgpack_pack_int64(&w.pk, offs[i]);
	}
	const msgpack_object *err = NULL;
	call(c, &w, id, &err);
	int rc = 0;
	if (err) {
		const char *m = "";
		uint32_t ml = 0;
		codec_get_str(err, "message", &m, &ml);
		fprintf(stderr, "kafkad-cli: commit failed: %.*s\n", (int)ml, m);
		rc = EXIT_FAILED;
	} else {
		for (int i = 0; i < n; i++)
			printf("committed %s[%d] = %lld for group %s\n", topic, parts[i], (long long)offs[i], group);
	}
	id = begin(c, &w, "consumer_close", 1);
	pack_kv_int(&w.pk, "handle", handle);
	call(c, &w, id, NULL);
	free(parts);
	free(offs);
	return rc;
}

/* The partition count of topic from the daemon's metadata (exits on error). */
static int32_t partition_count(cli *c, const char *topic)
{
	kd_writer w;
	uint64_t id = begin(c, &w, "metadata", 1);
	pack_cstr(&w.pk, "topics");
	msgpack_pack_array(&w.pk, 1);
	pack_cstr(&w.pk, topic);
	const msgpack_object_array *topics = NULL, *parts = NULL;
	codec_get_array(call(c, &w, id, NULL), "topics", &topics);
	const msgpack_object *t = topics && topics->size == 1 ? &topics->ptr[0] : NULL;
	const msgpack_object *err = t ? codec_map_get(t, "error") : NULL;
	if (!t || err) {
		const char *en = "no such topic";
		uint32_t enl = (uint32_t)strlen(en);
		if (err)
			codec_get_str(err, "name", &en, &enl);
		die(EXIT_FAILED, "%s: %.*s", topic, (int)enl, en);
	}
	codec_get_array(t, "partitions", &parts);
	return parts ? (int32_t)parts->size : 0;
}

/* Every partition's offset at time ts (or -2 earliest, -1 latest): one
 * offsets_for_times request for all n partitions; out gets n offsets. */
static void offsets_at(cli *c, const char *topic, int32_t n, int64_t ts, int64_t *out)
{
	kd_writer w;
	uint64_t id = begin(c, &w, "offsets_for_times", 1);
	pack_cstr(&w.pk, "timestamps");
	msgpack_pack_array(&w.pk, (size_t)n);
	for (int32_t p = 0; p < n; p++) {
		msgpack_pack_array(&w.pk, 3);
		pack_cstr(&w.pk, topic);
		msgpack_pack_int32(&w.pk, p);
		msgpack_pack_int64(&w.pk, ts);
	}
	const msgpack_object_array *offs = NULL;
	codec_get_array(call(c, &w, id, NULL), "offsets", &offs);
	if (!offs || offs->size != (uint32_t)n)
		die(EXIT_FAILED, "offsets_for_times: unexpected result");
	for (int32_t p = 0; p < n; p++) {
		const msgpack_object *e = &offs->ptr[p];
		const msgpack_object *o = e->type == MSGPACK_OBJECT_ARRAY && e->via.array.size == 3 ? &e->via.array.ptr[2] : NULL;
		if (!o || (o->type != MSGPACK_OBJECT_POSITIVE_INTEGER && o->type != MSGPACK_OBJECT_NEGATIVE_INTEGER))
			die(EXIT_FAILED, "offsets_for_times: unexpected result");
		out[p] = o->via.i64;
	}
}

static int cmd_offsets(cli *c, int argc, char **argv)
{
	const char *usage = "offsets TOPIC [-t TIME_MS]";
	bool at_time = false;
	int64_t when = 0;
	static const struct option o[] = {{"time", required_argument, NULL, 't'}, {NULL, 0, NULL, 0}};
	int ch;
	while ((ch = getopt_long(argc, argv, "t:", o, NULL)) != -1) {
		if (ch != 't')
			die(EXIT_USAGE, "%s", usage);
		char *end = NULL;
		when = strtoll(optarg, &end, 10);
		if (end == optarg || *end || when < 0)
			die(EXIT_USAGE, "%s (TIME_MS: an integer >= 0)", usage);
		at_time = true;
	}
	if (argc - optind != 1)
		die(EXIT_USAGE, "%s", usage);
	const char *topic = argv[optind];
	int32_t n = partition_count(c, topic);
	if (n <= 0)
		return 0;
	/* three requests whatever the partition count: low, high, at the time */
	int64_t *low = calloc((size_t)n * 3, sizeof(*low));
	if (!low)
		die(EXIT_FAILED, "out of memory");
	int64_t *high = low + n, *found = high + n;
	offsets_at(c, topic, n, -2, low); /* the protocol's earliest */
	offsets_at(c, topic, n, -1, high); /* latest: the next offset to be written */
	if (at_time)
		offsets_at(c, topic, n, when, found);
	for (int32_t p = 0; p < n; p++) {
		printf("%s[%d] low %lld high %lld", topic, p, (long long)low[p], (long long)high[p]);
		if (at_time)
			printf(" at %lld: %lld", (long long)when, (long long)found[p]);
		putchar('\n');
	}
	free(low);
	return 0;
}

int main(int argc, char **argv)
{
	const char *sock = getenv("KAFKAD_SOCKET");
	cli c = {0};
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if ((strcmp(argv[i], "-s") == 0 || strcmp(argv[i], "--socket") == 0) && i + 1 < argc)
			sock = argv[++i];
		else if ((strcmp(argv[i], "-C") == 0 || strcmp(argv[i], "--cluster") == 0) && i + 1 < argc)
			c.cluster = argv[++i];
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			fputs(usage_text, stdout);
			return 0;
		} else {
			fputs(usage_text, stderr);
			return EXIT_USAGE;
		}
	}
	if (i >= argc) {
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	static const struct {
		const char *name;
		int (*fn)(cli *, int, char **);
	} cmds[] = {
		{"ping", cmd_ping},       {"stats", cmd_stats},     {"metadata", cmd_metadata},
		{"produce", cmd_produce}, {"consume", cmd_consume}, {"commit", cmd_commit},
		{"offsets", cmd_offsets},
	};
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		if (strcmp(argv[i], cmds[k].name) != 0)
			continue;
		cli_connect(&c, sock && *sock ? sock : "/run/kafkad/kafkad.sock");
		hello(&c);
		optind = 1;
		int rc = cmds[k].fn(&c, argc - i, argv + i);
		msgpack_unpacked_destroy(&c.res);
		msgpack_unpacker_destroy(&c.up);
		close(c.fd);
		return rc;
	}
	fprintf(stderr, "kafkad-cli: unknown command '%s'\n", argv[i]);
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}
