/* Replays every protocol/vectors/NAME.json: each vector's JSON value packed with
 * msgpack-c must give exactly the bytes the Python packer wrote, and those
 * bytes must unpack back to the JSON value. Request vectors also go through
 * codec_decode_request; error responses are rebuilt with writer_error. */
#include <check.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "dispatch.h"
#include "errors.h"
#include "testutil.h"

#ifndef VECTORS_DIR
#error "VECTORS_DIR must be defined (tests/c/meson.build)"
#endif

/* --- the vectors ------------------------------------------------------------------ */

#define MAX_VECTORS 256
static char *names[MAX_VECTORS];
static int n_names;

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void list_vectors(void)
{
	DIR *dir = opendir(VECTORS_DIR);
	if (!dir) {
		fprintf(stderr, "cannot open %s\n", VECTORS_DIR);
		return;
	}
	struct dirent *de;
	while ((de = readdir(dir)) != NULL && n_names < MAX_VECTORS) {
		size_t n = strlen(de->d_name);
		if (n > 5 && strcmp(de->d_name + n - 5, ".json") == 0)
			names[n_names++] = strdup(de->d_name);
	}
	closedir(dir);
	qsort(names, (size_t)n_names, sizeof(names[0]), cmp_str);
}

START_TEST(vectors_present)
{
	ck_assert_msg(n_names > 0, "no *.json vectors in %s", VECTORS_DIR);
	/* the directory holds both kinds */
	int req = 0, resp = 0;
	for (int i = 0; i < n_names; i++) {
		req += strstr(names[i], "request") != NULL;
		resp += strstr(names[i], "response") != NULL;
	}
	ck_assert_int_gt(req, 0);
	ck_assert_int_gt(resp, 0);
}
END_TEST

/* Checks one vector; loops over all in one test so a failure names the file. */
static void check_vector(const char *file)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", VECTORS_DIR, file);
	json_error_t jerr;
	json_t *doc = json_load_file(path, JSON_PRESERVE_ORDER | JSON_REJECT_DUPLICATES, &jerr);
	ck_assert_msg(doc != NULL, "%s:%d: %s", file, jerr.line, jerr.text);
	json_t *jname = json_object_get(doc, "name"), *jkind = json_object_get(doc, "kind"),
	       *value = json_object_get(doc, "value"), *jhex = json_object_get(doc, "msgpack_hex");
	ck_assert_msg(json_is_string(jname) && json_is_string(jkind) && value && json_is_string(jhex),
		      "%s: needs name, kind, value and msgpack_hex", file);
	const char *name = json_string_value(jname), *kind = json_string_value(jkind);
	ck_assert_msg(strncmp(file, name, strlen(name)) == 0 && strcmp(file + strlen(name), ".json") == 0,
		      "%s: name '%s' does not match the file name", file, name);
	bool is_request = strcmp(kind, "request") == 0;
	ck_assert_msg(is_request || strcmp(kind, "response") == 0, "%s: kind '%s'", file, kind);
	size_t want_len = 0;
	char *want = tu_unhex_alloc(json_string_value(jhex), &want_len);
	ck_assert_msg(want != NULL, "%s: msgpack_hex is not hex", file);

	/* 1. JSON -> msgpack-c packer -> same bytes as the Python packer */
	msgpack_sbuffer sb;
	msgpack_sbuffer_init(&sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	char err[256] = "";
	ck_assert_msg(tu_pack_json(&pk, value, err, sizeof(err)), "%s: %s", file, err);
	char *got_hex = tu_tohex(sb.data, sb.size);
	ck_assert_msg(sb.size == want_len && memcmp(sb.data, want, want_len) == 0,
		      "%s: msgpack-c and the Python packer disagree:\n msgpack-c %s\n python    %s", file, got_hex,
		      json_string_value(jhex));
	free(got_hex);
	msgpack_sbuffer_destroy(&sb);

	/* 2. bytes -> msgpack-c unpacker -> JSON == value (order kept too) */
	msgpack_zone zone;
	msgpack_zone_init(&zone, 4096);
	msgpack_object root;
	size_t off = 0;
	ck_assert_msg(msgpack_unpack(want, want_len, &off, &zone, &root) == MSGPACK_UNPACK_SUCCESS && off == want_len,
		      "%s: msgpack_hex is not exactly one msgpack value", file);
	json_t *back = tu_to_json(&root, err, sizeof(err));
	ck_assert_msg(back != NULL, "%s: %s", file, err);
	char *s_back = json_dumps(back, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	char *s_value = json_dumps(value, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	ck_assert_msg(json_equal(back, value), "%s: unpacked value differs:\n got  %s\n want %s", file, s_back, s_value);
	ck_assert_msg(strcmp(s_back, s_value) == 0, "%s: key order differs:\n got  %s\n want %s", file, s_back, s_value);
	free(s_back);
	free(s_value);
	json_decref(back);

	/* 3. the envelope */
	ck_assert_msg(json_is_array(value) && json_array_size(value) == 3, "%s: not a 3-element envelope", file);
	json_t *e0 = json_array_get(value, 0), *e1 = json_array_get(value, 1), *e2 = json_array_get(value, 2);
	if (is_request) {
		msgpack_zone_clear(&zone);
		kd_request req;
		const char *why = "";
		int rc = codec_decode_request(want, want_len, &zone, &root, &req, &why);
		ck_assert_msg(rc == 0, "%s: codec_decode_request: %d (%s)", file, rc, why);
		ck_assert_msg(json_is_integer(e0) && req.has_id && req.id == (uint64_t)json_integer_value(e0),
			      "%s: id %llu", file, (unsigned long long)req.id);
		ck_assert_msg(json_is_string(e1) && codec_str_eq(req.op, req.op_len, json_string_value(e1)),
			      "%s: op '%.*s'", file, (int)req.op_len, req.op);
		ck_assert_msg((req.args == NULL) == json_is_null(e2), "%s: args", file);
		ck_assert_msg(dispatch_find(req.op, req.op_len) != NULL, "%s: op '%.*s' is not in the op table", file,
			      (int)req.op_len, req.op);
	} else {
		/* the daemon's writer builds error responses byte for byte */
		if (!json_is_null(e1)) {
			json_t *code = json_object_get(e1, "code"), *ename = json_object_get(e1, "name"),
			       *msg = json_object_get(e1, "message"), *retr = json_object_get(e1, "retriable");
			ck_assert_msg(json_is_integer(code) && json_is_string(ename) && json_is_string(msg) &&
					      json_is_boolean(retr) && json_object_size(e1) == 4,
				      "%s: error map must be {code, name, message, retriable}", file);
			int c = (int)json_integer_value(code);
			if (c < KD_ERR_KAFKA_BASE) {
				ck_assert_msg(kd_err_name(c) && strcmp(kd_err_name(c), json_string_value(ename)) == 0,
					      "%s: code %d is named %s, the daemon says %s", file, c, json_string_value(ename),
					      kd_err_name(c) ? kd_err_name(c) : "(none)");
			}
			ck_assert_msg(json_is_null(e2), "%s: error response with a result", file);
			kd_writer w;
			writer_init(&w);
			writer_error(&w, json_is_integer(e0) ? (uint64_t)json_integer_value(e0) : 0, json_is_integer(e0), c,
				     json_string_value(ename), json_string_value(msg), json_is_true(retr));
			size_t len;
			char *frame = writer_take(&w, &len);
			char *gh = tu_tohex(frame + 4, len - 4);
			ck_assert_msg(len - 4 == want_len && memcmp(frame + 4, want, want_len) == 0,
				      "%s: writer_error differs:\n writer %s\n vector %s", file, gh, json_string_value(jhex));
			free(gh);
			free(frame);
		} else {
			/* ok responses start [id, nil, ...] as writer_begin_ok writes them */
			ck_assert_msg(json_is_integer(e0), "%s: ok response without an id", file);
			kd_writer w;
			writer_init(&w);
			writer_begin_ok(&w, (uint64_t)json_integer_value(e0), true);
			size_t len;
			char *frame = writer_take(&w, &len);
			ck_assert_msg(len - 4 <= want_len && memcmp(frame + 4, want, len - 4) == 0,
				      "%s: writer_begin_ok prefix differs", file);
			free(frame);
		}
	}
	msgpack_zone_destroy(&zone);
	free(want);
	json_decref(doc);
}

START_TEST(vector_replay)
{
	ck_assert_int_lt(_i, n_names);
	check_vector(names[_i]);
}
END_TEST

/* The converters themselves, on values the vectors may not cover. */
START_TEST(converters_roundtrip)
{
	static const struct {
		const char *json;
		const char *hex;
	} t[] = {
		{"[0,127,128,255,256,65535,65536,4294967295,4294967296]",
		 "99007fcc80ccffcd0100cdffffce00010000ceffffffffcf0000000100000000"},
		{"[-1,-32,-33,-128,-129,-32768,-32769,-2147483648,-2147483649]",
		 "99ffe0d0dfd080d1ff7fd18000d2ffff7fffd280000000d3ffffffff7fffffff"},
		{"[9223372036854775807,-9223372036854775808]", "92cf7fffffffffffffffd38000000000000000"},
		{"{\"b\":1,\"a\":2}", "82a16201a16102"},
		{"[{\"$bin\":\"\"},{\"$bin\":\"00ff\"},\"\"]", "93c400c40200ffa0"},
		{"[1.5]", "91cb3ff8000000000000"},
		{"\"0123456789012345678901234567890\"", "bf30313233343536373839303132333435363738393031323334353637383930"},
		{"\"01234567890123456789012345678901\"",
		 "d9203031323334353637383930313233343536373839303132333435363738393031"},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		json_error_t jerr;
		json_t *v = json_loads(t[i].json, JSON_PRESERVE_ORDER | JSON_DECODE_ANY, &jerr);
		ck_assert_msg(v != NULL, "%s: %s", t[i].json, jerr.text);
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		msgpack_packer pk;
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		char err[256];
		ck_assert(tu_pack_json(&pk, v, err, sizeof(err)));
		char *hex = tu_tohex(sb.data, sb.size);
		ck_assert_msg(strcmp(hex, t[i].hex) == 0, "%s:\n got  %s\n want %s", t[i].json, hex, t[i].hex);
		msgpack_zone z;
		msgpack_zone_init(&z, 1024);
		msgpack_object o;
		size_t off = 0;
		ck_assert_int_eq(msgpack_unpack(sb.data, sb.size, &off, &z, &o), MSGPACK_UNPACK_SUCCESS);
		json_t *back = tu_to_json(&o, err, sizeof(err));
		ck_assert_msg(back && json_equal(back, v), "%s does not round-trip", t[i].json);
		json_decref(back);
		msgpack_zone_destroy(&z);
		free(hex);
		msgpack_sbuffer_destroy(&sb);
		json_decref(v);
	}
}
END_TEST

int main(void)
{
	list_vectors();
	Suite *s = suite_create("vectors");
	TCase *tc = tcase_create("vectors");
	tcase_add_test(tc, vectors_present);
	tcase_add_test(tc, converters_roundtrip);
	/* one test per file, so the log names each vector */
	tcase_add_loop_test(tc, vector_replay, 0, n_names);
	suite_add_tcase(s, tc);
	int rc = tu_run_suite(s);
	for (int i = 0; i < n_names; i++)
		free(names[i]);
	return rc;
}
