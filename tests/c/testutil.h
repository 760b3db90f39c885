/* Helpers shared by the Check suites: hex, and JSON <-> msgpack in the
 * format of protocol/vectors (bytes as {"$bin": "<hex>"}). */
#ifndef KAFKAD_TESTUTIL_H
#define KAFKAD_TESTUTIL_H

#include <check.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

/* Hex to bytes (whitespace ignored); fails the test on bad hex or when the
 * result exceeds cap. Returns the length. */
size_t tu_unhex(const char *hex, char *out, size_t cap);
/* Hex to a malloc'd buffer; NULL when hex is not valid (odd length, bad
 * digit). */
char *tu_unhex_alloc(const char *hex, size_t *len);
/* Bytes to a malloc'd lower-case hex string. */
char *tu_tohex(const void *buf, size_t len);

/* Packs a JSON value with msgpack-c: integers in their smallest encoding,
 * reals as float64, strings as str, {"$bin": hex} as bin, objects as maps in
 * their key order. Returns false with a message in err when v cannot be
 * packed. */
bool tu_pack_json(msgpack_packer *pk, json_t *v, char *err, size_t errlen);
/* Converts an unpacked object to JSON (bin as {"$bin": hex}). Returns a new
 * reference, or NULL with a message in err (non-str map keys, ext, uint64
 * beyond int64). */
json_t *tu_to_json(const msgpack_object *o, char *err, size_t errlen);
/* Parses JSON text (order kept, any top-level value); fails the test on a
 * syntax error. */
json_t *tu_json(const char *text);
/* Compact one-line dump (malloc'd). */
char *tu_dump(json_t *v);

/* Runs the suite (Check's default fork mode) and frees it; the process's
 * exit status: EXIT_SUCCESS when every test passed. */
int tu_run_suite(Suite *s);

#endif
