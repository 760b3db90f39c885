/* partitioner: librdkafka's built-in partitioners plus pykafka_hashing
 * (PyKafka's hashing_partitioner: sha1(key) as a 160-bit big-endian integer,
 * modulo the partition count). Ids fit in 3 bits: they travel inside each
 * message's opaque so one shared producer can honour a per-request choice. */
#ifndef KAFKAD_PARTITIONER_H
#define KAFKAD_PARTITIONER_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>
#include <stdint.h>

enum kd_partitioner {
	KD_PART_DEFAULT = 0, /* the topic's configured partitioner */
	KD_PART_RANDOM,
	KD_PART_CONSISTENT,
	KD_PART_CONSISTENT_RANDOM,
	KD_PART_MURMUR2,
	KD_PART_MURMUR2_RANDOM,
	KD_PART_FNV1A,
	KD_PART_PYKAFKA_HASHING,
	KD_PART_COUNT,
	/* config-only (does not fit the 3-bit per-request id) */
	KD_PART_FNV1A_RANDOM = KD_PART_COUNT,
};

/* Returns the id for a name, or -1. "fnv1a_random" parses to
 * KD_PART_FNV1A_RANDOM, usable as a topic default only. */
int partitioner_parse(const char *name);
int partitioner_parse_n(const char *name, size_t len);
const char *partitioner_names(void);

/* Partition for key under partitioner id (never KD_PART_DEFAULT). */
int32_t partitioner_pick(int id, const rd_kafka_topic_t *rkt, const void *key, size_t keylen, int32_t partition_cnt);

/* PyKafka's hashing partitioner. */
int32_t partitioner_pykafka_hash(const void *key, size_t keylen, int32_t partition_cnt);

/* SHA-1 (FIPS 180-4) of data into out[20]. */
void sha1_digest(const void *data, size_t len, uint8_t out[20]);

#endif
