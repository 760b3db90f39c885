#include "testutil.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t tu_unhex(const char *hex, char *out, size_t cap)
{
	size_t n = 0;
	int hi = -1;
	for (const char *p = hex; *p; p++) {
		if (*p == ' ' || *p == '\n' || *p == '\t')
			continue;
		int v = hexval(*p);
		ck_assert_msg(v >= 0, "bad hex digit '%c' in %s", *p, hex);
		if (hi < 0) {
			hi = v;
			continue;
		}
		ck_assert_msg(n < cap, "hex longer than %zu bytes", cap);
		out[n++] = (char)(hi << 4 | v);
		hi = -1;
	}
	ck_assert_msg(hi < 0, "odd number of hex digits in %s", hex);
	return n;
}

char *tu_unhex_alloc(const char *hex, size_t *len)
{
	size_t n = strlen(hex);
	if (n % 2)
		return NULL;
	char *out = malloc(n / 2 + 1);
	ck_assert_ptr_nonnull(out);
	for (size_t i = 0; i < n / 2; i++) {
		int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0) {
			free(out);
			return NULL;
		}
		out[i] = (char)(hi << 4 | lo);
	}
	*len = n / 2;
	return out;
}

char *tu_tohex(const void *buf, size_t len)
{
	const unsigned char *b = buf;
	char *s = malloc(2 * len + 1);
	ck_assert_ptr_nonnull(s);
	for (size_t i = 0; i < len; i++)
		snprintf(s + 2 * i, 3, "%02x", b[i]);
	s[2 * len] = '\0';
	return s;
}

static bool is_bin(json_t *v)
{
	return json_is_object(v) && json_object_size(v) == 1 && json_is_string(json_object_get(v, "$bin"));
}

bool tu_pack_json(msgpack_packer *pk, json_t *v, char *err, size_t errlen)
{
	switch (json_typeof(v)) {
	case JSON_NULL:
		return msgpack_pack_nil(pk) == 0;
	case JSON_TRUE:
		return msgpack_pack_true(pk) == 0;
	case JSON_FALSE:
		return msgpack_pack_false(pk) == 0;
	case JSON_INTEGER:
		/* msgpack-c picks the smallest encoding, as the Python packer does */
		return msgpack_pack_int64(pk, json_integer_value(v)) == 0;
	case JSON_REAL:
		/* the Python packer writes float as float64 unless told otherwise */
		return msgpack_pack_double(pk, json_real_value(v)) == 0;
	case JSON_STRING: {
		size_t n = json_string_length(v);
		return msgpack_pack_str(pk, n) == 0 && msgpack_pack_str_body(pk, json_string_value(v), n) == 0;
	}
	case JSON_ARRAY: {
		size_t i;
		json_t *e;
		msgpack_pack_array(pk, json_array_size(v));
		json_array_foreach(v, i, e) {
			if (!tu_pack_json(pk, e, err, errlen))
				return false;
		}
		return true;
	}
	case JSON_OBJECT: {
		if (is_bin(v)) {
			const char *hex = json_string_value(json_object_get(v, "$bin"));
			size_t n = 0;
			char *b = tu_unhex_alloc(hex, &n);
			if (!b) {
				snprintf(err, errlen, "bad $bin hex '%s'", hex);
				return false;
			}
			msgpack_pack_bin(pk, n);
			msgpack_pack_bin_body(pk, b, n);
			free(b);
			return true;
		}
		const char *k;
		json_t *e;
		msgpack_pack_map(pk, json_object_size(v));
		json_object_foreach(v, k, e) {
			size_t kn = strlen(k);
			msgpack_pack_str(pk, kn);
			msgpack_pack_str_body(pk, k, kn);
			if (!tu_pack_json(pk, e, err, errlen))
				return false;
		}
		return true;
	}
	}
	snprintf(err, errlen, "unexpected JSON type %d", (int)json_typeof(v));
	return false;
}

json_t *tu_to_json(const msgpack_object *o, char *err, size_t errlen)
{
	switch (o->type) {
	case MSGPACK_OBJECT_NIL:
		return json_null();
	case MSGPACK_OBJECT_BOOLEAN:
		return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER:
		if (o->via.u64 > (uint64_t)INT64_MAX) {
			snprintf(err, errlen, "integer %llu does not fit JSON's int64", (unsigned long long)o->via.u64);
			return NULL;
		}
		return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER:
		return json_integer((json_int_t)o->via.i64);
	case MSGPACK_OBJECT_FLOAT32:
	case MSGPACK_OBJECT_FLOAT64:
		return json_real(o->via.f64);
	case MSGPACK_OBJECT_STR: {
		/* msgpack str is UTF-8; jansson checks it */
		json_t *j = json_stringn(o->via.str.ptr, o->via.str.size);
		if (!j) {
			char *hex = tu_tohex(o->via.str.ptr, o->via.str.size);
			snprintf(err, errlen, "str is not valid UTF-8 (msgpack str must be): %.400s", hex);
			free(hex);
		}
		return j;
	}
	case MSGPACK_OBJECT_BIN: {
		char *hex = tu_tohex(o->via.bin.ptr, o->via.bin.size);
		json_t *j = json_object();
		json_object_set_new(j, "$bin", json_string(hex));
		free(hex);
		return j;
	}
	case MSGPACK_OBJECT_ARRAY: {
		json_t *a = json_array();
		for (uint32_t i = 0; i < o->via.array.size; i++) {
			json_t *e = tu_to_json(&o->via.array.ptr[i], err, errlen);
			if (!e) {
				json_decref(a);
				return NULL;
			}
			json_array_append_new(a, e);
		}
		return a;
	}
	case MSGPACK_OBJECT_MAP: {
		json_t *m = json_object();
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object_kv *kv = &o->via.map.ptr[i];
			if (kv->key.type != MSGPACK_OBJECT_STR) {
				snprintf(err, errlen, "map key of msgpack type %d (keys must be str)", (int)kv->key.type);
				json_decref(m);
				return NULL;
			}
			json_t *e = tu_to_json(&kv->val, err, errlen);
			if (!e) {
				json_decref(m);
				return NULL;
			}
			json_object_setn_new(m, kv->key.via.str.ptr, kv->key.via.str.size, e);
		}
		return m;
	}
	default:
		snprintf(err, errlen, "unexpected msgpack type %d", (int)o->type);
		return NULL;
	}
}

json_t *tu_json(const char *text)
{
	json_error_t jerr;
	json_t *v = json_loads(text, JSON_PRESERVE_ORDER | JSON_DECODE_ANY, &jerr);
	ck_assert_msg(v != NULL, "bad JSON in the test: %s: %s", text, jerr.text);
	return v;
}

char *tu_dump(json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
	ck_assert_ptr_nonnull(s);
	return s;
}

int tu_run_suite(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
