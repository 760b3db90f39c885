/* codec: pure functions between bytes and protocol values. No I/O, no
 * daemon state; shared by the daemon, the tests and kafkad-cli.
 *
 * Frames are a 4-byte big-endian length and one msgpack value. Requests are
 * [id, op, args], responses [id, error, result] (protocol/SPEC.md). */
#ifndef KAFKAD_CODEC_H
#define KAFKAD_CODEC_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KD_FRAME_HDR 4u

enum kd_frame_status { KD_FRAME_NEED_MORE = 0, KD_FRAME_READY = 1, KD_FRAME_BAD_LENGTH = -1 };

/* Looks at the start of buf: when a whole frame is there, sets *payload_len
 * and returns KD_FRAME_READY; KD_FRAME_NEED_MORE when more bytes are needed
 * (*payload_len is set as soon as the header is complete, 0 before);
 * KD_FRAME_BAD_LENGTH when the header announces 0 or more than max_frame. */
int codec_frame_check(const uint8_t *buf, size_t len, uint32_t max_frame, uint32_t *payload_len);

typedef struct kd_request {
	uint64_t id;
	bool has_id;              /* false when the id could not be read */
	const char *op;           /* not NUL-terminated; points into the frame */
	uint32_t op_len;
	const msgpack_object *args; /* a map, or NULL for nil/absent */
} kd_request;

/* Decodes one frame payload. Objects live in zone and point into payload.
 * Returns 0, KD_ERR_BAD_FRAME (not exactly one msgpack value) or
 * KD_ERR_BAD_REQUEST (valid msgpack, bad envelope; req->id set if readable).
 * *why gets a static description of the problem. */
int codec_decode_request(const char *payload, size_t len, msgpack_zone *zone, msgpack_object *root,
			 kd_request *req, const char **why);

/* --- argument access ---------------------------------------------------
 * Each getter returns 0 when the key is absent (outputs untouched), 1 when
 * present with the right type, -1 when present with a wrong type. nil counts
 * as absent. */
const msgpack_object *codec_map_get(const msgpack_object *map, const char *key);
int codec_get_str(const msgpack_object *map, const char *key, const char **s, uint32_t *len);
int codec_get_int(const msgpack_object *map, const char *key, int64_t *v);
int codec_get_bool(const msgpack_object *map, const char *key, bool *v);
/* bytes: bin or str. */
int codec_obj_bytes(const msgpack_object *o, const char **p, uint32_t *len);
int codec_get_bytes(const msgpack_object *map, const char *key, const char **p, uint32_t *len);
int codec_get_array(const msgpack_object *map, const char *key, const msgpack_object_array **a);
bool codec_str_eq(const char *s, uint32_t len, const char *lit);
/* A NUL-terminated copy of a msgpack string (which has no terminator).
 * Caller frees; NULL on allocation failure. */
char *codec_strdup(const char *p, uint32_t len);
/* Client input made safe to quote in an error message: at most ~64 bytes,
 * cut on a UTF-8 character boundary, invalid bytes replaced by '?', "..."
 * when cut. Writes into dst (>= 80 bytes) and returns it. */
#define KD_QUOTE_MAX 80
const char *codec_quote(char *dst, size_t dstlen, const char *p, uint32_t len);

/* --- writing ------------------------------------------------------------
 * A kd_writer builds one frame in a growable buffer. The caller owns the
 * buffer it takes with writer_take() and frees it with free(). */
typedef struct kd_writer {
	msgpack_sbuffer sb;
	msgpack_packer pk;
} kd_writer;

void writer_init(kd_writer *w);
/* Starts a success response: [id, nil, <result follows>]. */
void writer_begin_ok(kd_writer *w, uint64_t id, bool has_id);
/* Writes a complete error response [id, {code,name,message,retriable}, nil]. */
void writer_error(kd_writer *w, uint64_t id, bool has_id, int code, const char *name, const char *message,
		  bool retriable);
/* Packs an error map alone (for per-message outcomes). */
void codec_pack_error(msgpack_packer *pk, int code, const char *name, const char *message, bool retriable);
/* Room for n more bytes in the buffer of a kd_writer's packer, grown once
 * (a hint for large results; packing grows the buffer anyway). On failure it
 * does nothing. */
void writer_reserve(msgpack_packer *pk, size_t n);
/* Patches the frame length; returns the buffer (ownership to caller). */
char *writer_take(kd_writer *w, size_t *len);
void writer_destroy(kd_writer *w);

void pack_cstr(msgpack_packer *pk, const char *s);
void pack_kv_int(msgpack_packer *pk, const char *key, int64_t v);
void pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t v);
void pack_kv_str(msgpack_packer *pk, const char *key, const char *v);

#endif
