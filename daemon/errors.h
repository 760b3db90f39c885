/* Protocol error codes (protocol/SPEC.md section 3). Stable: never renumber. */
#ifndef KAFKAD_ERRORS_H
#define KAFKAD_ERRORS_H

#include <stdbool.h>

enum kd_err {
	KD_OK = 0,
	KD_ERR_BAD_FRAME = 1,
	KD_ERR_BAD_REQUEST = 2,
	KD_ERR_UNKNOWN_OP = 3,
	KD_ERR_INVALID_ARGUMENT = 4,
	KD_ERR_UNKNOWN_CLUSTER = 5,
	KD_ERR_UNSUPPORTED_VERSION = 6,
	KD_ERR_TIMED_OUT = 7,
	KD_ERR_INVALID_STATE = 8,
	KD_ERR_SHUTTING_DOWN = 9,
	KD_ERR_NOT_SUPPORTED = 10,
	KD_ERR_INTERNAL = 11,
	KD_ERR_TOO_LARGE = 12,
	KD_ERR_UNKNOWN_HANDLE = 13,
	KD_ERR_NOT_OWNER = 14,
	KD_ERR_NOT_ASSIGNED = 15,
	KD_ERR_MAX_DAEMON,
	/* Kafka errors: KD_ERR_KAFKA_BASE + rd_kafka_resp_err_t */
	KD_ERR_KAFKA_BASE = 10000,
};

/* Name of a daemon error code (1..KD_ERR_MAX_DAEMON-1), or NULL. */
const char *kd_err_name(int code);
/* Whether a daemon error code is retriable. */
bool kd_err_retriable(int code);
/* Whether code is a Kafka error (KD_ERR_KAFKA_BASE + rd_kafka_resp_err_t;
 * librdkafka's client-side errors are negative, so below the base too). */
static inline bool kd_err_is_kafka(int code) { return code >= KD_ERR_KAFKA_BASE - 1000; }

#endif
