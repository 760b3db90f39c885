/* codec: framing, request decoding, argument getters and the writer, plus a
 * deterministic fuzz loop over the decoder. */
#include <check.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "errors.h"
#include "testutil.h"

/* --- helpers ------------------------------------------------------------ */

typedef struct decoded {
	msgpack_zone zone;
	msgpack_object root;
	kd_request req;
	const char *why;
	int rc;
	char buf[4096];
	size_t len;
} decoded;

/* Decodes the request given in hex; d stays valid until zone_destroy. */
static decoded *decode_hex(const char *hex)
{
	decoded *d = calloc(1, sizeof(*d));
	ck_assert_ptr_nonnull(d);
	msgpack_zone_init(&d->zone, 1024);
	d->len = tu_unhex(hex, d->buf, sizeof(d->buf));
	d->rc = codec_decode_request(d->buf, d->len, &d->zone, &d->root, &d->req, &d->why);
	return d;
}

static void decoded_free(decoded *d)
{
	msgpack_zone_destroy(&d->zone);
	free(d);
}

/* Runs decode on hex and checks rc, has_id (and id when has_id). */
static void expect_decode(const char *hex, int rc, bool has_id, uint64_t id)
{
	decoded *d = decode_hex(hex);
	ck_assert_msg(d->rc == rc, "%s: rc %d, want %d (why: %s)", hex, d->rc, rc, d->rc ? d->why : "-");
	if (rc != 0)
		ck_assert_msg(d->why != NULL && d->why[0] != '\0', "%s: no reason given", hex);
	if (rc != KD_ERR_BAD_FRAME) {
		ck_assert_msg(d->req.has_id == has_id, "%s: has_id %d, want %d", hex, d->req.has_id, has_id);
		if (has_id)
			ck_assert_msg(d->req.id == id, "%s: id %llu, want %llu", hex, (unsigned long long)d->req.id,
				      (unsigned long long)id);
	}
	decoded_free(d);
}

/* msgpack-c allocates a container's declared size up front: a 5-byte
 * "dd ffffffff" asks malloc for 4G objects (96 GiB). That is only address
 * space, but a debugging allocator (MALLOC_PERTURB_, which `meson test`
 * sets) fills it, and so would a strict overcommit policy refuse it. The
 * tests that feed such sizes run with the address space capped, so those
 * allocations fail fast and the decoder's out-of-memory path (BAD_FRAME) is
 * what gets exercised. Called in the forked test process only. */
static void limit_address_space(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	ck_assert_ptr_nonnull(f);
	char line[256];
	unsigned long long vm_kb = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmSize: %llu kB", &vm_kb) == 1)
			break;
	fclose(f);
	ck_assert_uint_gt(vm_kb, 0);
	struct rlimit rl;
	ck_assert_int_eq(getrlimit(RLIMIT_AS, &rl), 0);
	rlim_t want = (rlim_t)vm_kb * 1024 + ((rlim_t)256 << 20);
	if (rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max)
		want = rl.rlim_max;
	rl.rlim_cur = want;
	ck_assert_int_eq(setrlimit(RLIMIT_AS, &rl), 0);
}

/* Under ASan, a failed allocation must return NULL (as malloc does) rather
 * than abort; ASAN_OPTIONS from the environment still take precedence. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* --- framing -------------------------------------------------------------- */

START_TEST(frame_empty_and_partial_header)
{
	const uint8_t hdr[4] = {0, 0, 0, 5};
	uint32_t n = 99;
	ck_assert_int_eq(codec_frame_check(hdr, 0, 1024, &n), KD_FRAME_NEED_MORE);
	ck_assert_uint_eq(n, 0);
	for (size_t len = 1; len < 4; len++) {
		n = 99;
		ck_assert_int_eq(codec_frame_check(hdr, len, 1024, &n), KD_FRAME_NEED_MORE);
		ck_assert_uint_eq(n, 0);
	}
	/* a header that will announce 0 is not judged before it is complete */
	const uint8_t zero[4] = {0, 0, 0, 0};
	ck_assert_int_eq(codec_frame_check(zero, 3, 1024, &n), KD_FRAME_NEED_MORE);
}
END_TEST

START_TEST(frame_bad_length)
{
	uint32_t n = 99;
	const uint8_t zero[8] = {0, 0, 0, 0, 0x90, 0, 0, 0};
	ck_assert_int_eq(codec_frame_check(zero, 4, 1024, &n), KD_FRAME_BAD_LENGTH);
	ck_assert_int_eq(codec_frame_check(zero, 8, 1024, &n), KD_FRAME_BAD_LENGTH);
	const uint8_t over[4] = {0, 0, 4, 1}; /* 1025 */
	ck_assert_int_eq(codec_frame_check(over, 4, 1024, &n), KD_FRAME_BAD_LENGTH);
	const uint8_t huge[4] = {0xff, 0xff, 0xff, 0xff};
	ck_assert_int_eq(codec_frame_check(huge, 4, 16u << 20, &n), KD_FRAME_BAD_LENGTH);
	/* big-endian: 0x01000000 is 16 MiB, 0x00000001 is 1 */
	const uint8_t be[4] = {1, 0, 0, 0};
	ck_assert_int_eq(codec_frame_check(be, 4, (16u << 20) - 1, &n), KD_FRAME_BAD_LENGTH);
	ck_assert_int_eq(codec_frame_check(be, 4, 16u << 20, &n), KD_FRAME_NEED_MORE);
	ck_assert_uint_eq(n, 16u << 20);
}
END_TEST

START_TEST(frame_partial_payload_and_exact)
{
	uint8_t buf[16] = {0, 0, 0, 4, 0x93, 0x01, 0xc0, 0x80, 0xaa, 0xbb};
	uint32_t n = 0;
	for (size_t len = 4; len < 8; len++) {
		n = 0;
		ck_assert_int_eq(codec_frame_check(buf, len, 1024, &n), KD_FRAME_NEED_MORE);
		ck_assert_uint_eq(n, 4); /* known as soon as the header is complete */
	}
	n = 0;
	ck_assert_int_eq(codec_frame_check(buf, 8, 1024, &n), KD_FRAME_READY);
	ck_assert_uint_eq(n, 4);
	/* bytes of the next frame behind it do not matter */
	ck_assert_int_eq(codec_frame_check(buf, 10, 1024, &n), KD_FRAME_READY);
	ck_assert_uint_eq(n, 4);
	/* length exactly max_frame is allowed; 1 is the minimum */
	ck_assert_int_eq(codec_frame_check(buf, 8, 4, &n), KD_FRAME_READY);
	const uint8_t one[5] = {0, 0, 0, 1, 0xc0};
	ck_assert_int_eq(codec_frame_check(one, 5, 1, &n), KD_FRAME_READY);
	ck_assert_uint_eq(n, 1);
	/* the largest length with the largest max_frame */
	const uint8_t max[4] = {0xff, 0xff, 0xff, 0xff};
	ck_assert_int_eq(codec_frame_check(max, 4, UINT32_MAX, &n), KD_FRAME_NEED_MORE);
	ck_assert_uint_eq(n, UINT32_MAX);
}
END_TEST

/* --- request decoding -------------------------------------------------------- */

START_TEST(decode_valid)
{
	/* [7, "ping", {}] */
	decoded *d = decode_hex("93 07 a4 70696e67 80");
	ck_assert_int_eq(d->rc, 0);
	ck_assert(d->req.has_id);
	ck_assert_uint_eq(d->req.id, 7);
	ck_assert(codec_str_eq(d->req.op, d->req.op_len, "ping"));
	ck_assert_ptr_eq(d->req.op, d->buf + 3); /* points into the frame */
	ck_assert_ptr_nonnull(d->req.args);
	ck_assert_int_eq(d->req.args->type, MSGPACK_OBJECT_MAP);
	ck_assert_uint_eq(d->req.args->via.map.size, 0);
	decoded_free(d);

	/* [1, "hello", {"version": 1, "client": "x"}] */
	d = decode_hex("93 01 a5 68656c6c6f 82 a7 76657273696f6e 01 a6 636c69656e74 a1 78");
	ck_assert_int_eq(d->rc, 0);
	ck_assert(codec_str_eq(d->req.op, d->req.op_len, "hello"));
	int64_t v = 0;
	ck_assert_int_eq(codec_get_int(d->req.args, "version", &v), 1);
	ck_assert_int_eq(v, 1);
	decoded_free(d);

	/* id in every unsigned width, up to UINT64_MAX */
	expect_decode("93 00 a4 70696e67 80", 0, true, 0);
	expect_decode("93 cc ff a4 70696e67 80", 0, true, 255);
	expect_decode("93 cd 0100 a4 70696e67 80", 0, true, 256);
	expect_decode("93 ce 00010000 a4 70696e67 80", 0, true, 65536);
	expect_decode("93 cf 0000010000000007 a4 70696e67 80", 0, true, (UINT64_C(1) << 40) + 7);
	expect_decode("93 cf ffffffffffffffff a4 70696e67 80", 0, true, UINT64_MAX);
	/* an op the daemon does not know still decodes (dispatch answers it) */
	expect_decode("93 05 a3 6e6f70 80", 0, true, 5);
	/* str8 op, map16 args */
	expect_decode("93 05 d9 04 70696e67 de 0000", 0, true, 5);
	/* empty op string */
	expect_decode("93 05 a0 80", 0, true, 5);
}
END_TEST

START_TEST(decode_nil_args)
{
	decoded *d = decode_hex("93 02 a4 70696e67 c0");
	ck_assert_int_eq(d->rc, 0);
	ck_assert(d->req.has_id);
	ck_assert_uint_eq(d->req.id, 2);
	ck_assert_ptr_null(d->req.args);
	/* getters treat a NULL args map as empty */
	int64_t v = 42;
	ck_assert_int_eq(codec_get_int(d->req.args, "version", &v), 0);
	ck_assert_int_eq(v, 42);
	decoded_free(d);
}
END_TEST

START_TEST(decode_bad_envelope)
{
	/* shapes where no id can be read */
	expect_decode("80", KD_ERR_BAD_REQUEST, false, 0);                         /* {} */
	expect_decode("01", KD_ERR_BAD_REQUEST, false, 0);                         /* 1 */
	expect_decode("c0", KD_ERR_BAD_REQUEST, false, 0);                         /* nil */
	expect_decode("a4 70696e67", KD_ERR_BAD_REQUEST, false, 0);                /* "ping" */
	expect_decode("90", KD_ERR_BAD_REQUEST, false, 0);                         /* [] */
	expect_decode("92 01 a4 70696e67", KD_ERR_BAD_REQUEST, false, 0);          /* [1, "ping"] */
	expect_decode("94 01 a4 70696e67 80 80", KD_ERR_BAD_REQUEST, false, 0);    /* 4 elements */
	expect_decode("dc 0003 01 a4 70696e67 80", 0, true, 1);                    /* array16 of 3 is fine */
	expect_decode("93 ff a4 70696e67 80", KD_ERR_BAD_REQUEST, false, 0);       /* id -1 */
	expect_decode("93 d0 80 a4 70696e67 80", KD_ERR_BAD_REQUEST, false, 0);    /* id -128 */
	expect_decode("93 c0 a4 70696e67 80", KD_ERR_BAD_REQUEST, false, 0);       /* id nil */
	expect_decode("93 a1 31 a4 70696e67 80", KD_ERR_BAD_REQUEST, false, 0);    /* id "1" */
	expect_decode("93 cb 3ff0000000000000 a4 70696e67 80", KD_ERR_BAD_REQUEST, false, 0); /* id 1.0 */
	expect_decode("93 c3 a4 70696e67 80", KD_ERR_BAD_REQUEST, false, 0);       /* id true */
	expect_decode("93 91 01 a4 70696e67 80", KD_ERR_BAD_REQUEST, false, 0);    /* id [1] */
	/* shapes where the id is known */
	expect_decode("93 05 01 80", KD_ERR_BAD_REQUEST, true, 5);                 /* op 1 */
	expect_decode("93 05 c0 80", KD_ERR_BAD_REQUEST, true, 5);                 /* op nil */
	expect_decode("93 05 c4 04 70696e67 80", KD_ERR_BAD_REQUEST, true, 5);     /* op bin */
	expect_decode("93 06 a4 70696e67 90", KD_ERR_BAD_REQUEST, true, 6);        /* args [] */
	expect_decode("93 06 a4 70696e67 01", KD_ERR_BAD_REQUEST, true, 6);        /* args 1 */
	expect_decode("93 06 a4 70696e67 a0", KD_ERR_BAD_REQUEST, true, 6);        /* args "" */
	expect_decode("93 06 a4 70696e67 c2", KD_ERR_BAD_REQUEST, true, 6);        /* args false */
	expect_decode("93 cf ffffffffffffffff a4 70696e67 01", KD_ERR_BAD_REQUEST, true, UINT64_MAX);
}
END_TEST

START_TEST(decode_bad_frame)
{
	expect_decode("", KD_ERR_BAD_FRAME, false, 0);                          /* nothing */
	expect_decode("c1", KD_ERR_BAD_FRAME, false, 0);                        /* never-used byte */
	expect_decode("93 07 c1 80", KD_ERR_BAD_FRAME, false, 0);               /* c1 inside */
	expect_decode("93", KD_ERR_BAD_FRAME, false, 0);                        /* truncated array */
	expect_decode("93 07 a4 7069", KD_ERR_BAD_FRAME, false, 0);             /* truncated str */
	expect_decode("93 07 a4 70696e67", KD_ERR_BAD_FRAME, false, 0);         /* missing args */
	expect_decode("93 07 a4 70696e67 81 a1 61", KD_ERR_BAD_FRAME, false, 0); /* map value missing */
	expect_decode("cd 01", KD_ERR_BAD_FRAME, false, 0);                     /* truncated uint16 */
	expect_decode("c4 05 0102", KD_ERR_BAD_FRAME, false, 0);                /* truncated bin */
	/* one value plus trailing bytes */
	decoded *d = decode_hex("93 07 a4 70696e67 80 00");
	ck_assert_int_eq(d->rc, KD_ERR_BAD_FRAME);
	ck_assert_ptr_nonnull(strstr(d->why, "more than one"));
	decoded_free(d);
	expect_decode("93 07 a4 70696e67 80 93 08 a4 70696e67 80", KD_ERR_BAD_FRAME, false, 0); /* two requests */
	expect_decode("c0 c0", KD_ERR_BAD_FRAME, false, 0);
	/* nesting deeper than the unpacker's stack */
	char hex[512] = "";
	for (int i = 0; i < 100; i++)
		strcat(hex, "91");
	strcat(hex, "c0");
	expect_decode(hex, KD_ERR_BAD_FRAME, false, 0);
}
END_TEST

/* A few bytes that declare a huge container must not be a crash. */
START_TEST(decode_huge_declared_counts)
{
	limit_address_space();
	expect_decode("dd ffffffff", KD_ERR_BAD_FRAME, false, 0);
	expect_decode("df ffffffff", KD_ERR_BAD_FRAME, false, 0);
	expect_decode("93 07 a4 70696e67 df 7fffffff a1 61", KD_ERR_BAD_FRAME, false, 0);
	expect_decode("dd 00010000", KD_ERR_BAD_FRAME, false, 0);
	expect_decode("df 00010000", KD_ERR_BAD_FRAME, false, 0);
	expect_decode("93 07 a4 70696e67 df 00001000", KD_ERR_BAD_FRAME, false, 0);
	expect_decode("c6 7fffffff 00", KD_ERR_BAD_FRAME, false, 0);
	expect_decode("db ffffffff 00", KD_ERR_BAD_FRAME, false, 0);
}
END_TEST

/* --- argument getters -------------------------------------------------------- */

static msgpack_sbuffer g_sb;
static msgpack_zone g_zone;
static msgpack_object g_map;

/* {"s": "str", "b": bin 00 01, "e": bin "", "i": 5, "n": nil, "neg": -5,
 *  "u64max": 2^64-1, "i64max": 2^63-1, "i64min": -2^63, "t": true,
 *  "arr": [1, 2], "f": 1.5, "m": {}, 7: "int key", "es": ""} */
static void build_map(void)
{
	msgpack_sbuffer_init(&g_sb);
	msgpack_packer pk;
	msgpack_packer_init(&pk, &g_sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 15);
	pack_cstr(&pk, "s");
	pack_cstr(&pk, "str");
	pack_cstr(&pk, "b");
	msgpack_pack_bin(&pk, 2);
	msgpack_pack_bin_body(&pk, "\x00\x01", 2);
	pack_cstr(&pk, "e");
	msgpack_pack_bin(&pk, 0);
	pack_kv_int(&pk, "i", 5);
	pack_cstr(&pk, "n");
	msgpack_pack_nil(&pk);
	pack_kv_int(&pk, "neg", -5);
	pack_kv_uint(&pk, "u64max", UINT64_MAX);
	pack_kv_int(&pk, "i64max", INT64_MAX);
	pack_kv_int(&pk, "i64min", INT64_MIN);
	pack_cstr(&pk, "t");
	msgpack_pack_true(&pk);
	pack_cstr(&pk, "arr");
	msgpack_pack_array(&pk, 2);
	msgpack_pack_int(&pk, 1);
	msgpack_pack_int(&pk, 2);
	pack_cstr(&pk, "f");
	msgpack_pack_double(&pk, 1.5);
	pack_cstr(&pk, "m");
	msgpack_pack_map(&pk, 0);
	msgpack_pack_int(&pk, 7);
	pack_cstr(&pk, "int key");
	pack_kv_str(&pk, "es", "");
	msgpack_zone_init(&g_zone, 1024);
	size_t off = 0;
	ck_assert_int_eq(msgpack_unpack(g_sb.data, g_sb.size, &off, &g_zone, &g_map), MSGPACK_UNPACK_SUCCESS);
}

static void free_map(void)
{
	msgpack_zone_destroy(&g_zone);
	msgpack_sbuffer_destroy(&g_sb);
}

START_TEST(getters_map_get)
{
	ck_assert_ptr_null(codec_map_get(NULL, "s"));
	msgpack_object notmap = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER};
	ck_assert_ptr_null(codec_map_get(&notmap, "s"));
	ck_assert_ptr_nonnull(codec_map_get(&g_map, "s"));
	ck_assert_ptr_null(codec_map_get(&g_map, "absent"));
	ck_assert_ptr_null(codec_map_get(&g_map, "n")); /* nil counts as absent */
	ck_assert_ptr_null(codec_map_get(&g_map, "7")); /* non-string keys are skipped */
	ck_assert_ptr_null(codec_map_get(&g_map, ""));
	ck_assert_ptr_null(codec_map_get(&g_map, "ne")); /* no prefix matches */
	ck_assert_ptr_null(codec_map_get(&g_map, "nega"));
}
END_TEST

START_TEST(getters_str)
{
	const char *s = "untouched";
	uint32_t len = 99;
	ck_assert_int_eq(codec_get_str(&g_map, "absent", &s, &len), 0);
	ck_assert_int_eq(codec_get_str(&g_map, "n", &s, &len), 0);
	ck_assert_int_eq(codec_get_str(NULL, "s", &s, &len), 0);
	ck_assert_str_eq(s, "untouched");
	ck_assert_uint_eq(len, 99);
	ck_assert_int_eq(codec_get_str(&g_map, "i", &s, &len), -1);
	ck_assert_int_eq(codec_get_str(&g_map, "b", &s, &len), -1); /* bin is not a str */
	ck_assert_int_eq(codec_get_str(&g_map, "arr", &s, &len), -1);
	ck_assert_str_eq(s, "untouched");
	ck_assert_int_eq(codec_get_str(&g_map, "s", &s, &len), 1);
	ck_assert_uint_eq(len, 3);
	ck_assert(codec_str_eq(s, len, "str"));
	ck_assert_int_eq(codec_get_str(&g_map, "es", &s, &len), 1);
	ck_assert_uint_eq(len, 0);
}
END_TEST

START_TEST(getters_int)
{
	int64_t v = 1234;
	ck_assert_int_eq(codec_get_int(&g_map, "absent", &v), 0);
	ck_assert_int_eq(codec_get_int(&g_map, "n", &v), 0);
	ck_assert_int_eq(v, 1234);
	ck_assert_int_eq(codec_get_int(&g_map, "s", &v), -1);
	ck_assert_int_eq(codec_get_int(&g_map, "f", &v), -1);
	ck_assert_int_eq(codec_get_int(&g_map, "t", &v), -1);
	ck_assert_int_eq(codec_get_int(&g_map, "b", &v), -1);
	ck_assert_int_eq(codec_get_int(&g_map, "u64max", &v), -1); /* does not fit int64 */
	ck_assert_int_eq(v, 1234);
	ck_assert_int_eq(codec_get_int(&g_map, "i", &v), 1);
	ck_assert_int_eq(v, 5);
	ck_assert_int_eq(codec_get_int(&g_map, "neg", &v), 1);
	ck_assert_int_eq(v, -5);
	ck_assert_int_eq(codec_get_int(&g_map, "i64max", &v), 1);
	ck_assert(v == INT64_MAX);
	ck_assert_int_eq(codec_get_int(&g_map, "i64min", &v), 1);
	ck_assert(v == INT64_MIN);
}
END_TEST

START_TEST(getters_int_widths)
{
	/* "Integers may be sent in any msgpack integer width." {"v": X} */
	static const struct {
		const char *hex;
		int64_t v;
	} t[] = {
		{"81 a1 76 00", 0},
		{"81 a1 76 7f", 127},
		{"81 a1 76 cc 05", 5},
		{"81 a1 76 cd 0005", 5},
		{"81 a1 76 ce 00000005", 5},
		{"81 a1 76 cf 0000000000000005", 5},
		{"81 a1 76 d0 05", 5}, /* int8 holding a positive value */
		{"81 a1 76 d1 0005", 5},
		{"81 a1 76 d2 00000005", 5},
		{"81 a1 76 d3 0000000000000005", 5},
		{"81 a1 76 e0", -32},
		{"81 a1 76 d0 80", -128},
		{"81 a1 76 d1 8000", -32768},
		{"81 a1 76 d2 80000000", INT32_MIN},
		{"81 a1 76 d3 8000000000000000", INT64_MIN},
		{"81 a1 76 cf 7fffffffffffffff", INT64_MAX},
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		char buf[64];
		size_t n = tu_unhex(t[i].hex, buf, sizeof(buf));
		msgpack_zone z;
		msgpack_zone_init(&z, 256);
		msgpack_object o;
		size_t off = 0;
		ck_assert_int_eq(msgpack_unpack(buf, n, &off, &z, &o), MSGPACK_UNPACK_SUCCESS);
		int64_t v = 0;
		ck_assert_msg(codec_get_int(&o, "v", &v) == 1 && v == t[i].v, "%s: got %lld", t[i].hex, (long long)v);
		msgpack_zone_destroy(&z);
	}
}
END_TEST

START_TEST(getters_bool)
{
	bool b = false;
	ck_assert_int_eq(codec_get_bool(&g_map, "absent", &b), 0);
	ck_assert_int_eq(codec_get_bool(&g_map, "n", &b), 0);
	ck_assert_int_eq(codec_get_bool(&g_map, "i", &b), -1);
	ck_assert_int_eq(codec_get_bool(&g_map, "s", &b), -1);
	ck_assert(!b);
	ck_assert_int_eq(codec_get_bool(&g_map, "t", &b), 1);
	ck_assert(b);
}
END_TEST

START_TEST(getters_bytes)
{
	const char *p = NULL;
	uint32_t len = 77;
	ck_assert_int_eq(codec_get_bytes(&g_map, "absent", &p, &len), 0);
	ck_assert_int_eq(codec_get_bytes(&g_map, "n", &p, &len), 0);
	ck_assert_ptr_null(p);
	ck_assert_uint_eq(len, 77);
	ck_assert_int_eq(codec_get_bytes(&g_map, "i", &p, &len), -1);
	ck_assert_int_eq(codec_get_bytes(&g_map, "arr", &p, &len), -1);
	ck_assert_int_eq(codec_get_bytes(&g_map, "m", &p, &len), -1);
	ck_assert_int_eq(codec_get_bytes(&g_map, "b", &p, &len), 1);
	ck_assert_uint_eq(len, 2);
	ck_assert(memcmp(p, "\x00\x01", 2) == 0);
	ck_assert_int_eq(codec_get_bytes(&g_map, "s", &p, &len), 1); /* str taken as its bytes */
	ck_assert_uint_eq(len, 3);
	ck_assert(memcmp(p, "str", 3) == 0);
	ck_assert_int_eq(codec_get_bytes(&g_map, "e", &p, &len), 1);
	ck_assert_uint_eq(len, 0);
	ck_assert_int_eq(codec_get_bytes(&g_map, "es", &p, &len), 1);
	ck_assert_uint_eq(len, 0);
	/* codec_obj_bytes on bare objects */
	msgpack_object o = {.type = MSGPACK_OBJECT_NIL};
	ck_assert_int_eq(codec_obj_bytes(&o, &p, &len), -1);
	o.type = MSGPACK_OBJECT_BOOLEAN;
	ck_assert_int_eq(codec_obj_bytes(&o, &p, &len), -1);
	o.type = MSGPACK_OBJECT_BIN;
	o.via.bin.ptr = "xyz";
	o.via.bin.size = 3;
	ck_assert_int_eq(codec_obj_bytes(&o, &p, &len), 1);
	ck_assert_ptr_eq(p, o.via.bin.ptr);
	ck_assert_uint_eq(len, 3);
}
END_TEST

START_TEST(getters_array)
{
	const msgpack_object_array *a = NULL;
	ck_assert_int_eq(codec_get_array(&g_map, "absent", &a), 0);
	ck_assert_int_eq(codec_get_array(&g_map, "n", &a), 0);
	ck_assert_int_eq(codec_get_array(&g_map, "m", &a), -1);
	ck_assert_int_eq(codec_get_array(&g_map, "s", &a), -1);
	ck_assert_ptr_null(a);
	ck_assert_int_eq(codec_get_array(&g_map, "arr", &a), 1);
	ck_assert_uint_eq(a->size, 2);
	ck_assert_uint_eq(a->ptr[1].via.u64, 2);
}
END_TEST

START_TEST(str_eq)
{
	ck_assert(codec_str_eq("ping", 4, "ping"));
	ck_assert(!codec_str_eq("ping", 3, "ping"));
	ck_assert(!codec_str_eq("pingx", 5, "ping"));
	ck_assert(!codec_str_eq("pong", 4, "ping"));
	ck_assert(codec_str_eq("", 0, ""));
	ck_assert(codec_str_eq("abc", 0, ""));
	ck_assert(!codec_str_eq("a\0b", 3, "a"));
}
END_TEST

/* --- writer -------------------------------------------------------------------- */

static void expect_frame(kd_writer *w, const char *want_hex)
{
	size_t len = 0;
	char *buf = writer_take(w, &len);
	ck_assert_ptr_nonnull(buf);
	char *got = tu_tohex(buf, len);
	char want[8192];
	size_t wn = tu_unhex(want_hex, want, sizeof(want));
	char *wanth = tu_tohex(want, wn);
	ck_assert_msg(len == wn && memcmp(buf, want, wn) == 0, "frame:\n got  %s\n want %s", got, wanth);
	free(got);
	free(wanth);
	free(buf);
	writer_destroy(w); /* harmless after take */
}

START_TEST(writer_ok_response)
{
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, 7, true);
	msgpack_pack_map(&w.pk, 0);
	expect_frame(&w, "00000004 93 07 c0 80");

	writer_init(&w);
	writer_begin_ok(&w, 0, false);
	msgpack_pack_map(&w.pk, 0);
	expect_frame(&w, "00000004 93 c0 c0 80");

	writer_init(&w);
	writer_begin_ok(&w, (UINT64_C(1) << 40) + 7, true);
	msgpack_pack_map(&w.pk, 1);
	pack_kv_uint(&w.pk, "remaining", 0);
	expect_frame(&w, "00000017 93 cf 0000010000000007 c0 81 a9 72656d61696e696e67 00");

	/* the flush_response vector, byte for byte */
	writer_init(&w);
	writer_begin_ok(&w, 10, true);
	msgpack_pack_map(&w.pk, 1);
	pack_kv_uint(&w.pk, "remaining", 0);
	expect_frame(&w, "0000000f 930ac081a972656d61696e696e6700");
}
END_TEST

START_TEST(writer_error_response)
{
	kd_writer w;
	writer_init(&w);
	writer_error(&w, 12, true, KD_ERR_UNKNOWN_CLUSTER, "UNKNOWN_CLUSTER", "cluster 'nope' is not configured", false);
	/* = protocol/vectors/error_response_unknown_cluster.json */
	expect_frame(&w, "00000054"
			 "930c84a4636f646505a46e616d65af554e4b4e4f574e5f434c5553544552a76d657373616765d920636c757374657220276e"
			 "6f706527206973206e6f7420636f6e66696775726564a9726574726961626c65c2c0");

	writer_init(&w);
	writer_error(&w, 0, false, KD_ERR_BAD_REQUEST, "BAD_REQUEST", "envelope is not [id, op, args]", false);
	/* = protocol/vectors/error_response_bad_request_nil_id.json */
	expect_frame(&w, "0000004d"
			 "93c084a4636f646502a46e616d65ab4241445f52455155455354a76d657373616765be656e76656c6f7065206973206e6f74"
			 "205b69642c206f702c20617267735da9726574726961626c65c2c0");

	/* retriable, and NULL name/message */
	writer_init(&w);
	writer_error(&w, 3, true, KD_ERR_TIMED_OUT, NULL, NULL, true);
	expect_frame(&w, "0000002b 93 03 84 a4 636f6465 07 a4 6e616d65 a7 554e4b4e4f574e a7 6d657373616765 a0"
			 " a9 726574726961626c65 c3 c0");
}
END_TEST

START_TEST(writer_pack_helpers)
{
	kd_writer w;
	writer_init(&w);
	msgpack_pack_map(&w.pk, 5);
	pack_kv_int(&w.pk, "a", -1);
	pack_kv_int(&w.pk, "b", -33);
	pack_kv_int(&w.pk, "c", 200);
	pack_kv_uint(&w.pk, "d", 70000);
	pack_kv_str(&w.pk, "e", NULL);
	expect_frame(&w, "00000016 85 a1 61 ff a1 62 d0 df a1 63 cc c8 a1 64 ce 00011170 a1 65 c0");
}
END_TEST

START_TEST(writer_length_prefix_large)
{
	/* a frame past 64 KiB: the prefix must carry all four bytes */
	const size_t vlen = 300000;
	char *value = malloc(vlen);
	ck_assert_ptr_nonnull(value);
	memset(value, 'v', vlen);
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, 1, true);
	msgpack_pack_bin(&w.pk, vlen);
	msgpack_pack_bin_body(&w.pk, value, vlen);
	size_t len = 0;
	char *buf = writer_take(&w, &len);
	ck_assert_uint_eq(len, 4 + 3 + 5 + vlen);
	uint32_t n = 0;
	ck_assert_int_eq(codec_frame_check((const uint8_t *)buf, len, 16u << 20, &n), KD_FRAME_READY);
	ck_assert_uint_eq(n, len - 4);
	ck_assert_int_eq(codec_frame_check((const uint8_t *)buf, len - 1, 16u << 20, &n), KD_FRAME_NEED_MORE);
	ck_assert_uint_eq((unsigned char)buf[0], 0x00);
	ck_assert_uint_eq((unsigned char)buf[1], 0x04);
	ck_assert_uint_eq((unsigned char)buf[2], 0x93);
	ck_assert_uint_eq((unsigned char)buf[3], 0xe8); /* 300008 = 0x000493e8 */
	/* what the writer produces is what a reader accepts as one value */
	msgpack_zone z;
	msgpack_zone_init(&z, 1024);
	msgpack_object root;
	kd_request req;
	const char *why;
	/* an ok response is not a request: [1, nil, bin] has a nil op */
	ck_assert_int_eq(codec_decode_request(buf + 4, n, &z, &root, &req, &why), KD_ERR_BAD_REQUEST);
	ck_assert(req.has_id);
	ck_assert_uint_eq(req.id, 1);
	ck_assert_uint_eq(root.via.array.ptr[2].via.bin.size, vlen);
	msgpack_zone_destroy(&z);
	free(buf);
	free(value);
	writer_destroy(&w);
}
END_TEST

START_TEST(writer_destroy_without_take)
{
	kd_writer w;
	writer_init(&w);
	writer_begin_ok(&w, 1, true);
	msgpack_pack_nil(&w.pk);
	writer_destroy(&w); /* LeakSanitizer checks this frees the buffer */
}
END_TEST

/* --- fuzz ------------------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rng(void)
{
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * UINT64_C(2685821657736338717);
}

static const char *const seeds[] = {
	"9301a568656c6c6f82a776657273696f6e01a6636c69656e74b16b61666b61642d707974686f6e2f302e31",
	"9302a470696e67c0",
	"93cf0000010000000007a470696e6780",
	"930aa5666c75736881aa74696d656f75745f6d73cd2710",
	/* produce with messages, headers, key, partition, timestamp */
	"9307a770726f6475636583a5746f706963a66576656e7473a361636ba477616974a86d657373616765739383a576616c7565c402"
	"7631a36b6579c405627261766fa7686561646572739292a26831c4017892a26832c0c4016383a576616c7565c0a970617274"
	"6974696f6e02a974696d657374616d70cf0000018bcfe56800",
	"93 07 a4 70696e67 80",
};

/* Decodes payload; asserts the contract whatever the bytes. */
static void fuzz_one(const char *payload, size_t len, msgpack_zone *z, unsigned *counts)
{
	msgpack_object root;
	kd_request req;
	const char *why = NULL;
	int rc = codec_decode_request(payload, len, z, &root, &req, &why);
	ck_assert_msg(rc == 0 || rc == KD_ERR_BAD_FRAME || rc == KD_ERR_BAD_REQUEST, "rc %d", rc);
	if (rc == 0) {
		counts[0]++;
		ck_assert(req.has_id);
		ck_assert(req.op >= payload && req.op + req.op_len <= payload + len);
		ck_assert(req.args == NULL || req.args->type == MSGPACK_OBJECT_MAP);
		/* the getters must cope with whatever the map holds */
		int64_t i;
		const char *s;
		uint32_t n;
		bool b;
		const msgpack_object_array *a;
		static const char *keys[] = {"topic", "value", "key", "messages", "version", "ack", "timeout_ms"};
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			int r1 = codec_get_int(req.args, keys[k], &i);
			int r2 = codec_get_str(req.args, keys[k], &s, &n);
			int r3 = codec_get_bytes(req.args, keys[k], &s, &n);
			int r4 = codec_get_bool(req.args, keys[k], &b);
			int r5 = codec_get_array(req.args, keys[k], &a);
			ck_assert(r1 >= -1 && r1 <= 1 && r2 >= -1 && r2 <= 1 && r3 >= -1 && r3 <= 1 && r4 >= -1 &&
				  r4 <= 1 && r5 >= -1 && r5 <= 1);
			if (r3 > 0)
				ck_assert(n == 0 || (s >= payload && s + n <= payload + len));
		}
	} else {
		counts[rc]++;
		ck_assert_ptr_nonnull(why);
	}
	msgpack_zone_clear(z);
}

START_TEST(fuzz_decode)
{
	limit_address_space();
	rng_state = UINT64_C(0x6b61666b61640001);
	msgpack_zone z;
	msgpack_zone_init(&z, 4096);
	char seedbuf[sizeof(seeds) / sizeof(seeds[0])][512];
	size_t seedlen[sizeof(seeds) / sizeof(seeds[0])];
	const size_t nseeds = sizeof(seeds) / sizeof(seeds[0]);
	for (size_t i = 0; i < nseeds; i++)
		seedlen[i] = tu_unhex(seeds[i], seedbuf[i], sizeof(seedbuf[i]));
	/* the seeds themselves decode */
	for (size_t i = 0; i < nseeds; i++) {
		msgpack_object root;
		kd_request req;
		const char *why = "";
		ck_assert_msg(codec_decode_request(seedbuf[i], seedlen[i], &z, &root, &req, &why) == 0, "seed %zu: %s", i,
			      why);
		msgpack_zone_clear(&z);
	}
	unsigned counts[3] = {0, 0, 0};
	char buf[600];
	const int iterations = 100000;
	for (int it = 0; it < iterations; it++) {
		size_t len;
		uint64_t mode = rng() % 4;
		if (mode == 0) {
			/* random bytes */
			len = rng() % 48;
			for (size_t i = 0; i < len; i++)
				buf[i] = (char)rng();
		} else {
			/* a valid request with a few mutations */
			size_t s = rng() % nseeds;
			len = seedlen[s];
			memcpy(buf, seedbuf[s], len);
			int muts = 1 + (int)(rng() % 4);
			for (int m = 0; m < muts; m++) {
				uint64_t op = rng() % 6;
				size_t pos = len ? rng() % len : 0;
				if (op == 0 && len) /* random byte */
					buf[pos] = (char)rng();
				else if (op == 1 && len) /* flip a bit */
					buf[pos] ^= (char)(1u << (rng() % 8));
				else if (op == 2) /* truncate */
					len = pos;
				else if (op == 3 && len < sizeof(buf) - 8) { /* insert a byte */
					memmove(buf + pos + 1, buf + pos, len - pos);
					buf[pos] = (char)rng();
					len++;
				} else if (op == 4 && len) { /* delete a byte */
					memmove(buf + pos, buf + pos + 1, len - pos - 1);
					len--;
				} else if (op == 5 && len < sizeof(buf) - 8) { /* append bytes */
					size_t add = 1 + rng() % 4;
					for (size_t i = 0; i < add; i++)
						buf[len++] = (char)rng();
				}
			}
		}
		/* a private copy, so ASan sees any read past the end */
		char *p = malloc(len ? len : 1);
		ck_assert_ptr_nonnull(p);
		memcpy(p, buf, len);
		fuzz_one(p, len, &z, counts);
		free(p);
	}
	/* every outcome was reached, so the loop really exercised the decoder */
	ck_assert_msg(counts[0] > 1000 && counts[KD_ERR_BAD_FRAME] > 1000 && counts[KD_ERR_BAD_REQUEST] > 1000,
		      "ok %u, bad frame %u, bad request %u", counts[0], counts[KD_ERR_BAD_FRAME],
		      counts[KD_ERR_BAD_REQUEST]);
	msgpack_zone_destroy(&z);
}
END_TEST

START_TEST(fuzz_frame_check)
{
	rng_state = UINT64_C(0x6b61666b61640002);
	for (int it = 0; it < 100000; it++) {
		uint8_t buf[16];
		for (size_t i = 0; i < sizeof(buf); i++)
			buf[i] = (uint8_t)rng();
		if (rng() % 2)
			buf[0] = buf[1] = 0; /* small lengths are common */
		size_t len = rng() % (sizeof(buf) + 1);
		uint32_t max = (uint32_t)(rng() % 2 ? 16 : rng());
		uint32_t n = 7;
		int st = codec_frame_check(buf, len, max, &n);
		uint32_t want_n = len >= 4 ? (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3] : 0;
		if (len < 4) {
			ck_assert_int_eq(st, KD_FRAME_NEED_MORE);
			ck_assert_uint_eq(n, 0);
		} else if (want_n == 0 || want_n > max) {
			ck_assert_int_eq(st, KD_FRAME_BAD_LENGTH);
		} else {
			ck_assert_uint_eq(n, want_n);
			ck_assert_int_eq(st, len - 4 >= want_n ? KD_FRAME_READY : KD_FRAME_NEED_MORE);
		}
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("codec");
	TCase *tc = tcase_create("framing");
	tcase_add_test(tc, frame_empty_and_partial_header);
	tcase_add_test(tc, frame_bad_length);
	tcase_add_test(tc, frame_partial_payload_and_exact);
	suite_add_tcase(s, tc);

	tc = tcase_create("decode");
	tcase_add_test(tc, decode_valid);
	tcase_add_test(tc, decode_nil_args);
	tcase_add_test(tc, decode_bad_envelope);
	tcase_add_test(tc, decode_bad_frame);
	tcase_add_test(tc, decode_huge_declared_counts);
	suite_add_tcase(s, tc);

	tc = tcase_create("getters");
	tcase_add_checked_fixture(tc, build_map, free_map);
	tcase_add_test(tc, getters_map_get);
	tcase_add_test(tc, getters_str);
	tcase_add_test(tc, getters_int);
	tcase_add_test(tc, getters_int_widths);
	tcase_add_test(tc, getters_bool);
	tcase_add_test(tc, getters_bytes);
	tcase_add_test(tc, getters_array);
	tcase_add_test(tc, str_eq);
	suite_add_tcase(s, tc);

	tc = tcase_create("writer");
	tcase_add_test(tc, writer_ok_response);
	tcase_add_test(tc, writer_error_response);
	tcase_add_test(tc, writer_pack_helpers);
	tcase_add_test(tc, writer_length_prefix_large);
	tcase_add_test(tc, writer_destroy_without_take);
	suite_add_tcase(s, tc);

	tc = tcase_create("fuzz");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, fuzz_decode);
	tcase_add_test(tc, fuzz_frame_check);
	suite_add_tcase(s, tc);

	return tu_run_suite(s);
}
