#include "partitioner.h"

#include <string.h>

static const char *const names[] = {
	[KD_PART_DEFAULT] = "default",
	[KD_PART_RANDOM] = "random",
	[KD_PART_CONSISTENT] = "consistent",
	[KD_PART_CONSISTENT_RANDOM] = "consistent_random",
	[KD_PART_MURMUR2] = "murmur2",
	[KD_PART_MURMUR2_RANDOM] = "murmur2_random",
	[KD_PART_FNV1A] = "fnv1a",
	[KD_PART_PYKAFKA_HASHING] = "pykafka_hashing",
	[KD_PART_FNV1A_RANDOM] = "fnv1a_random",
};

int partitioner_parse_n(const char *name, size_t len)
{
	for (int i = 1; i <= KD_PART_FNV1A_RANDOM; i++)
		if (strlen(names[i]) == len && memcmp(names[i], name, len) == 0)
			return i;
	return -1;
}

int partitioner_parse(const char *name)
{
	return partitioner_parse_n(name, strlen(name));
}

const char *partitioner_names(void)
{
	return "random, consistent, consistent_random, murmur2, murmur2_random, fnv1a, fnv1a_random, pykafka_hashing";
}

int32_t partitioner_pykafka_hash(const void *key, size_t keylen, int32_t partition_cnt)
{
	uint8_t d[20];
	sha1_digest(key, keylen, d);
	/* Horner's rule on the big-endian digest keeps the remainder small. */
	uint64_t r = 0;
	for (int i = 0; i < 20; i++)
		r = ((r << 8) | d[i]) % (uint64_t)partition_cnt;
	return (int32_t)r;
}

int32_t partitioner_pick(int id, const rd_kafka_topic_t *rkt, const void *key, size_t keylen, int32_t cnt)
{
	switch (id) {
	case KD_PART_RANDOM:
		return rd_kafka_msg_partitioner_random(rkt, key, keylen, cnt, NULL, NULL);
	case KD_PART_CONSISTENT:
		return rd_kafka_msg_partitioner_consistent(rkt, key, keylen, cnt, NULL, NULL);
	case KD_PART_MURMUR2:
		return rd_kafka_msg_partitioner_murmur2(rkt, key, keylen, cnt, NULL, NULL);
	case KD_PART_MURMUR2_RANDOM:
		return rd_kafka_msg_partitioner_murmur2_random(rkt, key, keylen, cnt, NULL, NULL);
	case KD_PART_FNV1A:
		return rd_kafka_msg_partitioner_fnv1a(rkt, key, keylen, cnt, NULL, NULL);
	case KD_PART_FNV1A_RANDOM:
		return rd_kafka_msg_partitioner_fnv1a_random(rkt, key, keylen, cnt, NULL, NULL);
	case KD_PART_PYKAFKA_HASHING:
		if (key == NULL)
			return rd_kafka_msg_partitioner_random(rkt, key, keylen, cnt, NULL, NULL);
		return partitioner_pykafka_hash(key, keylen, cnt);
	case KD_PART_CONSISTENT_RANDOM:
	default:
		return rd_kafka_msg_partitioner_consistent_random(rkt, key, keylen, cnt, NULL, NULL);
	}
}

/* --- SHA-1, written from FIPS 180-4 --------------------------------------- */

static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
	uint32_t w[80];
	for (int t = 0; t < 16; t++)
		w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 | (uint32_t)p[4 * t + 2] << 8 | p[4 * t + 3];
	for (int t = 16; t < 80; t++)
		w[t] = rol(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
	uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
	for (int t = 0; t < 80; t++) {
		uint32_t f, k;
		if (t < 20) {
			f = (b & c) | (~b & d);
			k = 0x5a827999u;
		} else if (t < 40) {
			f = b ^ c ^ d;
			k = 0x6ed9eba1u;
		} else if (t < 60) {
			f = (b & c) | (b & d) | (c & d);
			k = 0x8f1bbcdcu;
		} else {
			f = b ^ c ^ d;
			k = 0xca62c1d6u;
		}
		uint32_t tmp = rol(a, 5) + f + e + k + w[t];
		e = d;
		d = c;
		c = rol(b, 30);
		b = a;
		a = tmp;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
	h[4] += e;
}

void sha1_digest(const void *data, size_t len, uint8_t out[20])
{
	uint32_t h[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u};
	const uint8_t *p = data;
	size_t left = len;
	while (left >= 64) {
		sha1_block(h, p);
		p += 64;
		left -= 64;
	}
	uint8_t tail[128] = {0};
	if (left)
		memcpy(tail, p, left);
	tail[left] = 0x80;
	size_t tail_len = left < 56 ? 64 : 128;
	uint64_t bits = (uint64_t)len * 8;
	for (int i = 0; i < 8; i++)
		tail[tail_len - 1 - i] = (uint8_t)(bits >> (8 * i));
	sha1_block(h, tail);
	if (tail_len == 128)
		sha1_block(h, tail + 64);
	for (int i = 0; i < 5; i++) {
		out[4 * i] = (uint8_t)(h[i] >> 24);
		out[4 * i + 1] = (uint8_t)(h[i] >> 16);
		out[4 * i + 2] = (uint8_t)(h[i] >> 8);
		out[4 * i + 3] = (uint8_t)h[i];
	}
}
