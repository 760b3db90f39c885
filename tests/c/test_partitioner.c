/* partitioner: SHA-1 against FIPS 180 vectors, PyKafka's hashing
 * partitioner against Python's own arithmetic, and the name table. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "partitioner.h"
#include "testutil.h"

static void hex20(const uint8_t d[20], char out[41])
{
	for (int i = 0; i < 20; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void check_sha1(const void *data, size_t len, const char *expect)
{
	uint8_t d[20];
	char hex[41];
	memset(d, 0xaa, sizeof(d));
	sha1_digest(data, len, d);
	hex20(d, hex);
	ck_assert_msg(strcmp(hex, expect) == 0, "sha1 of %zu bytes: got %s, want %s", len, hex, expect);
}

START_TEST(sha1_fips_abc)
{
	check_sha1("abc", 3, "a9993e364706816aba3e25717850c26c9cd0d89d");
}
END_TEST

START_TEST(sha1_fips_empty)
{
	check_sha1("", 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
	check_sha1(NULL, 0, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
}
END_TEST

START_TEST(sha1_fips_448bit)
{
	const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	ck_assert_uint_eq(strlen(m), 56);
	check_sha1(m, strlen(m), "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
}
END_TEST

START_TEST(sha1_fips_896bit)
{
	const char *m = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
	check_sha1(m, strlen(m), "a49b2446a02c645bf419f995b67091253a04a259");
}
END_TEST

START_TEST(sha1_fips_million_a)
{
	size_t n = 1000000;
	char *m = malloc(n);
	ck_assert_ptr_nonnull(m);
	memset(m, 'a', n);
	check_sha1(m, n, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
	free(m);
}
END_TEST

/* Padding boundaries (55/56 bytes: one or two final blocks; 64: a full
 * block and then a padding-only block). Expected from hashlib.sha1. */
START_TEST(sha1_padding_boundaries)
{
	static const struct {
		size_t len;
		const char *hex;
	} v[] = {
		{55, "7b271259bf2d2d3311f75d398745f5309ff76e09"},  {56, "cc30d5bc02bd26f3da6c5801880078dad9a63032"},
		{63, "0807f7f930492f9e95070290aeac189e3721bf07"},  {64, "ce2798652a5cbba06c6f736ddeca9724e479e5b7"},
		{65, "b0931a65ae5cf3e027199de5f7c56eb0f073c552"},  {119, "c69516277e59324c6533caed0d3f7974cbc86061"},
		{120, "b265d110f022092352c9471f056c857b31ad79d8"},
	};
	char buf[128];
	memset(buf, 'q', sizeof(buf));
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
		check_sha1(buf, v[i].len, v[i].hex);
}
END_TEST

/* Expected values: int(hashlib.sha1(k).hexdigest(), 16) % n, computed with
 * python3 for these keys and n. */
static const int32_t ns[] = {1, 2, 3, 7, 10, 16, 100, 1000, 2147483647};
#define NN (sizeof(ns) / sizeof(ns[0]))

START_TEST(pykafka_hash_matches_python)
{
	static char big[256];
	for (int i = 0; i < 256; i++)
		big[i] = (char)i;
	static char xs[100];
	memset(xs, 'x', sizeof(xs));
	static const struct {
		const char *key;
		size_t len;
		int32_t want[NN];
	} t[] = {
		{"", 0, {0, 1, 1, 3, 5, 9, 5, 305, 988008275}},
		{"a", 1, {0, 0, 1, 4, 2, 8, 52, 152, 1970026614}},
		{"abc", 3, {0, 1, 2, 4, 7, 13, 17, 517, 1211294219}},
		{"user-42", 7, {0, 0, 2, 6, 2, 14, 2, 502, 1072030730}},
		{"bravo", 5, {0, 0, 0, 3, 4, 0, 84, 984, 1756010497}},
		{"tombstone", 9, {0, 0, 0, 0, 2, 12, 12, 812, 1917536250}},
		{"\0", 1, {0, 1, 1, 0, 9, 15, 39, 39, 2108103546}},
		{"\xff\xfe\xfd", 3, {0, 1, 0, 6, 1, 13, 41, 341, 1382853797}},
		{"hello world", 11, {0, 1, 1, 3, 3, 13, 33, 533, 1825859390}},
		{NULL, 100, {0, 1, 1, 2, 5, 5, 5, 205, 1027661239}},  /* "x" * 100 */
		{NULL, 256, {0, 0, 0, 1, 4, 8, 4, 904, 1758110326}},  /* bytes(range(256)) */
	};
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *key = t[i].key ? t[i].key : (t[i].len == 100 ? xs : big);
		for (size_t j = 0; j < NN; j++) {
			int32_t got = partitioner_pykafka_hash(key, t[i].len, ns[j]);
			ck_assert_msg(got == t[i].want[j], "key #%zu n=%d: got %d, want %d", i, ns[j], got, t[i].want[j]);
			/* partitioner_pick routes keyed messages to the same function */
			got = partitioner_pick(KD_PART_PYKAFKA_HASHING, NULL, key, t[i].len, ns[j]);
			ck_assert_msg(got == t[i].want[j], "pick: key #%zu n=%d: got %d, want %d", i, ns[j], got,
				      t[i].want[j]);
		}
	}
}
END_TEST

START_TEST(keyed_partitioners_in_range)
{
	/* The librdkafka keyed partitioners do not look at the topic when a key
	 * is given: deterministic and in range. */
	static const int ids[] = {KD_PART_CONSISTENT, KD_PART_MURMUR2, KD_PART_FNV1A, KD_PART_PYKAFKA_HASHING};
	char key[16];
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		for (int k = 0; k < 200; k++) {
			int n = snprintf(key, sizeof(key), "key-%d", k);
			int32_t a = partitioner_pick(ids[i], NULL, key, (size_t)n, 7);
			int32_t b = partitioner_pick(ids[i], NULL, key, (size_t)n, 7);
			ck_assert_int_eq(a, b);
			ck_assert(a >= 0 && a < 7);
		}
	}
}
END_TEST

START_TEST(parse_names)
{
	static const struct {
		const char *name;
		int id;
	} t[] = {
		{"random", KD_PART_RANDOM},
		{"consistent", KD_PART_CONSISTENT},
		{"consistent_random", KD_PART_CONSISTENT_RANDOM},
		{"murmur2", KD_PART_MURMUR2},
		{"murmur2_random", KD_PART_MURMUR2_RANDOM},
		{"fnv1a", KD_PART_FNV1A},
		{"fnv1a_random", KD_PART_FNV1A_RANDOM},
		{"pykafka_hashing", KD_PART_PYKAFKA_HASHING},
	};
	const char *all = partitioner_names();
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		ck_assert_msg(partitioner_parse(t[i].name) == t[i].id, "%s", t[i].name);
		ck_assert_msg(partitioner_parse_n(t[i].name, strlen(t[i].name)) == t[i].id, "%s", t[i].name);
		ck_assert_msg(strstr(all, t[i].name) != NULL, "partitioner_names() lacks %s", t[i].name);
		if (t[i].id != KD_PART_FNV1A_RANDOM)
			ck_assert_msg(t[i].id > KD_PART_DEFAULT && t[i].id < KD_PART_COUNT, "%s does not fit 3 bits",
				      t[i].name);
	}
	ck_assert_int_lt(KD_PART_COUNT, 9); /* ids travel in 3 bits of the opaque */
	static const char *bad[] = {"", "default", "Random", "murmur", "murmur2 ", "pykafka", "crc32", "fnv1a_"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(partitioner_parse(bad[i]) == -1, "'%s' should not parse", bad[i]);
	/* parse_n honours the length: no NUL needed, prefixes do not match */
	ck_assert_int_eq(partitioner_parse_n("murmur2_random", 7), KD_PART_MURMUR2);
	ck_assert_int_eq(partitioner_parse_n("fnv1a_randomXYZ", 12), KD_PART_FNV1A_RANDOM);
	ck_assert_int_eq(partitioner_parse_n("random", 5), -1);
	ck_assert_int_eq(partitioner_parse_n("random", 0), -1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("partitioner");
	TCase *tc = tcase_create("sha1");
	tcase_add_test(tc, sha1_fips_abc);
	tcase_add_test(tc, sha1_fips_empty);
	tcase_add_test(tc, sha1_fips_448bit);
	tcase_add_test(tc, sha1_fips_896bit);
	tcase_add_test(tc, sha1_fips_million_a);
	tcase_add_test(tc, sha1_padding_boundaries);
	suite_add_tcase(s, tc);
	tc = tcase_create("partitioners");
	tcase_add_test(tc, pykafka_hash_matches_python);
	tcase_add_test(tc, keyed_partitioners_in_range);
	tcase_add_test(tc, parse_names);
	suite_add_tcase(s, tc);
	return tu_run_suite(s);
}
