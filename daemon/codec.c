#include "codec.h"

#include <stdlib.h>
#include <string.h>

#include "errors.h"

int codec_frame_check(const uint8_t *buf, size_t len, uint32_t max_frame, uint32_t *payload_len)
{
	*payload_len = 0;
	if (len < KD_FRAME_HDR)
		return KD_FRAME_NEED_MORE;
	uint32_t n = ((uint32_t)buf[0] << 24) | ((uint32_t)buf[1] << 16) | ((uint32_t)buf[2] << 8) | buf[3];
	if (n == 0 || n > max_frame)
		return KD_FRAME_BAD_LENGTH;
	*payload_len = n;
	return len - KD_FRAME_HDR >= n ? KD_FRAME_READY : KD_FRAME_NEED_MORE;
}

/* msgpack-c allocates a container's declared element count before reading
 * it, so 6 bytes can ask for gigabytes. This walk checks that every declared
 * count fits in the bytes that remain (each element takes at least one) and
 * that nesting stays shallow, before msgpack-c sees the frame. */
#define MAX_DEPTH 32

static bool be_len(const uint8_t *p, size_t left, size_t width, uint64_t *out)
{
	if (left < width)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < width; i++)
		v = (v << 8) | p[i];
	*out = v;
	return true;
}

/* 0: plausible; 1: malformed or implausible; 2: bytes after the value */
static int plausible(const uint8_t *p, size_t len)
{
	uint64_t pending[MAX_DEPTH + 1]; /* elements still expected per level */
	int depth = 0;
	pending[0] = 1;
	size_t i = 0;
	while (depth >= 0) {
		if (pending[depth] == 0) {
			depth--;
			continue;
		}
		pending[depth]--;
		if (i >= len)
			return 1;
		uint8_t b = p[i++];
		uint64_t n = 0, skip = 0, children = 0;
		size_t left = len - i;
		if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
			/* fixint, nil, bool */
		} else if (b >= 0x80 && b <= 0x8f) {
			children = 2u * (b & 0x0f);
		} else if (b >= 0x90 && b <= 0x9f) {
			children = b & 0x0f;
		} else if (b >= 0xa0 && b <= 0xbf) {
			skip = b & 0x1f;
		} else {
			switch (b) {
			case 0xc4: case 0xd9: if (!be_len(p + i, left, 1, &n)) return 1; skip = 1 + n; break;
			case 0xc5: case 0xda: if (!be_len(p + i, left, 2, &n)) return 1; skip = 2 + n; break;
			case 0xc6: case 0xdb: if (!be_len(p + i, left, 4, &n)) return 1; skip = 4 + n; break;
			case 0xc7: if (!be_len(p + i, left, 1, &n)) return 1; skip = 2 + n; break;
			case 0xc8: if (!be_len(p + i, left, 2, &n)) return 1; skip = 3 + n; break;
			case 0xc9: if (!be_len(p + i, left, 4, &n)) return 1; skip = 5 + n; break;
			case 0xca: skip = 4; break;
			case 0xcb: skip = 8; break;
			case 0xcc: case 0xd0: skip = 1; break;
			case 0xcd: case 0xd1: skip = 2; break;
			case 0xce: case 0xd2: skip = 4; break;
			case 0xcf: case 0xd3: skip = 8; break;
			case 0xd4: skip = 2; break;
			case 0xd5: skip = 3; break;
			case 0xd6: skip = 5; break;
			case 0xd7: skip = 9; break;
			case 0xd8: skip = 17; break;
			case 0xdc: if (!be_len(p + i, left, 2, &n)) return 1; i += 2; children = n; break;
			case 0xdd: if (!be_len(p + i, left, 4, &n)) return 1; i += 4; children = n; break;
			case 0xde: if (!be_len(p + i, left, 2, &n)) return 1; i += 2; children = 2 * n; break;
			case 0xdf: if (!be_len(p + i, left, 4, &n)) return 1; i += 4; children = 2 * n; break;
			default: return 1; /* 0xc1: never used */
			}
		}
		if (skip > len - i)
			return 1;
		i += (size_t)skip;
		if (children) {
			if (children > len - i || depth == MAX_DEPTH)
				return 1;
			pending[++depth] = children;
		}
	}
	return i == len ? 0 : 2;
}

int codec_decode_request(const char *payload, size_t len, msgpack_zone *zone, msgpack_object *root,
			 kd_request *req, const char **why)
{
	memset(req, 0, sizeof(*req));
	int shape = plausible((const uint8_t *)payload, len);
	if (shape != 0) {
		*why = shape == 2 ? "frame holds more than one msgpack value"
				  : "frame payload is not valid msgpack (or declares more elements than it holds)";
		return KD_ERR_BAD_FRAME;
	}
	size_t off = 0;
	msgpack_unpack_return r = msgpack_unpack(payload, len, &off, zone, root);
	if (r != MSGPACK_UNPACK_SUCCESS || off != len) {
		*why = r == MSGPACK_UNPACK_EXTRA_BYTES || (r == MSGPACK_UNPACK_SUCCESS && off != len)
			       ? "frame holds more than one msgpack value"
			       : "frame payload is not valid msgpack";
		return KD_ERR_BAD_FRAME;
	}
	if (root->type != MSGPACK_OBJECT_ARRAY || root->via.array.size != 3) {
		*why = "request must be an array [id, op, args]";
		return KD_ERR_BAD_REQUEST;
	}
	const msgpack_object *e = root->via.array.ptr;
	if (e[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
		*why = "request id must be an unsigned integer";
		return KD_ERR_BAD_REQUEST;
	}
	req->id = e[0].via.u64;
	req->has_id = true;
	if (e[1].type != MSGPACK_OBJECT_STR) {
		*why = "op must be a string";
		return KD_ERR_BAD_REQUEST;
	}
	req->op = e[1].via.str.ptr;
	req->op_len = e[1].via.str.size;
	if (e[2].type == MSGPACK_OBJECT_MAP)
		req->args = &e[2];
	else if (e[2].type != MSGPACK_OBJECT_NIL) {
		*why = "args must be a map or nil";
		return KD_ERR_BAD_REQUEST;
	}
	return 0;
}

bool codec_str_eq(const char *s, uint32_t len, const char *lit)
{
	size_t n = strlen(lit);
	return n == len && memcmp(s, lit, n) == 0;
}

char *codec_strdup(const char *p, uint32_t len)
{
	char *s = malloc((size_t)len + 1);
	if (!s)
		return NULL;
	memcpy(s, p, len);
	s[len] = '\0';
	return s;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t left)
{
	size_t n;
	if (p[0] < 0x80)
		return p[0] ? 1 : 0;
	else if ((p[0] & 0xe0) == 0xc0 && p[0] >= 0xc2)
		n = 2;
	else if ((p[0] & 0xf0) == 0xe0)
		n = 3;
	else if ((p[0] & 0xf8) == 0xf0 && p[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (n > left)
		return 0;
	for (size_t i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

const char *codec_quote(char *dst, size_t dstlen, const char *p, uint32_t len)
{
	const size_t budget = dstlen > 16 ? dstlen - 4 : 0; /* room for "..." and NUL */
	size_t o = 0, i = 0;
	while (i < len) {
		size_t n = utf8_seq((const unsigned char *)p + i, len - i);
		size_t w = n ? n : 1;
		if (o + w > budget || o >= 64)
			break;
		if (n && (unsigned char)p[i] >= 0x20)
			memcpy(dst + o, p + i, n);
		else
			dst[o] = '?';
		o += n && (unsigned char)p[i] >= 0x20 ? n : 1;
		i += w;
	}
	if (i < len && o + 3 < dstlen) {
		memcpy(dst + o, "...", 3);
		o += 3;
	}
	dst[o < dstlen ? o : dstlen - 1] = '\0';
	return dst;
}

const msgpack_object *codec_map_get(const msgpack_object *map, const char *key)
{
	if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR && codec_str_eq(kv->key.via.str.ptr, kv->key.via.str.size, key))
			return kv->val.type == MSGPACK_OBJECT_NIL ? NULL : &kv->val;
	}
	return NULL;
}

int codec_get_str(const msgpack_object *map, const char *key, const char **s, uint32_t *len)
{
	const msgpack_object *o = codec_map_get(map, key);
	if (o == NULL)
		return 0;
	if (o->type != MSGPACK_OBJECT_STR)
		return -1;
	*s = o->via.str.ptr;
	*len = o->via.str.size;
	return 1;
}

int codec_get_int(const msgpack_object *map, const char *key, int64_t *v)
{
	const msgpack_object *o = codec_map_get(map, key);
	if (o == NULL)
		return 0;
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (o->via.u64 > (uint64_t)INT64_MAX)
			return -1;
		*v = (int64_t)o->via.u64;
		return 1;
	}
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*v = o->via.i64;
		return 1;
	}
	return -1;
}

int codec_get_bool(const msgpack_object *map, const char *key, bool *v)
{
	const msgpack_object *o = codec_map_get(map, key);
	if (o == NULL)
		return 0;
	if (o->type != MSGPACK_OBJECT_BOOLEAN)
		return -1;
	*v = o->via.boolean;
	return 1;
}

int codec_obj_bytes(const msgpack_object *o, const char **p, uint32_t *len)
{
	if (o->type == MSGPACK_OBJECT_BIN) {
		*p = o->via.bin.ptr;
		*len = o->via.bin.size;
		return 1;
	}
	if (o->type == MSGPACK_OBJECT_STR) {
		*p = o->via.str.ptr;
		*len = o->via.str.size;
		return 1;
	}
	return -1;
}

int codec_get_bytes(const msgpack_object *map, const char *key, const char **p, uint32_t *len)
{
	const msgpack_object *o = codec_map_get(map, key);
	if (o == NULL)
		return 0;
	return codec_obj_bytes(o, p, len);
}

int codec_get_array(const msgpack_object *map, const char *key, const msgpack_object_array **a)
{
	const msgpack_object *o = codec_map_get(map, key);
	if (o == NULL)
		return 0;
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return -1;
	*a = &o->via.array;
	return 1;
}

void writer_init(kd_writer *w)
{
	msgpack_sbuffer_init(&w->sb);
	msgpack_packer_init(&w->pk, &w->sb, msgpack_sbuffer_write);
	static const char hdr[KD_FRAME_HDR] = {0};
	msgpack_sbuffer_write(&w->sb, hdr, KD_FRAME_HDR);
}

static void pack_id(kd_writer *w, uint64_t id, bool has_id)
{
	msgpack_pack_array(&w->pk, 3);
	if (has_id)
		msgpack_pack_uint64(&w->pk, id);
	else
		msgpack_pack_nil(&w->pk);
}

void writer_begin_ok(kd_writer *w, uint64_t id, bool has_id)
{
	pack_id(w, id, has_id);
	msgpack_pack_nil(&w->pk);
}

void pack_cstr(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

void pack_kv_int(msgpack_packer *pk, const char *key, int64_t v)
{
	pack_cstr(pk, key);
	msgpack_pack_int64(pk, v);
}

void pack_kv_uint(msgpack_packer *pk, const char *key, uint64_t v)
{
	pack_cstr(pk, key);
	msgpack_pack_uint64(pk, v);
}

void pack_kv_str(msgpack_packer *pk, const char *key, const char *v)
{
	pack_cstr(pk, key);
	if (v)
		pack_cstr(pk, v);
	else
		msgpack_pack_nil(pk);
}

void codec_pack_error(msgpack_packer *pk, int code, const char *name, const char *message, bool retriable)
{
	msgpack_pack_map(pk, 4);
	pack_kv_int(pk, "code", code);
	pack_kv_str(pk, "name", name ? name : "UNKNOWN");
	pack_kv_str(pk, "message", message ? message : "");
	pack_cstr(pk, "retriable");
	if (retriable)
		msgpack_pack_true(pk);
	else
		msgpack_pack_false(pk);
}

void writer_error(kd_writer *w, uint64_t id, bool has_id, int code, const char *name, const char *message,
		  bool retriable)
{
	pack_id(w, id, has_id);
	codec_pack_error(&w->pk, code, name, message, retriable);
	msgpack_pack_nil(&w->pk);
}

void writer_reserve(msgpack_packer *pk, size_t n)
{
	msgpack_sbuffer *sb = pk->data; /* every kd_writer packs into its sbuffer */
	if (sb->alloc - sb->size >= n || n > SIZE_MAX - sb->size)
		return;
	char *d = realloc(sb->data, sb->size + n);
	if (d) {
		sb->data = d;
		sb->alloc = sb->size + n;
	}
}

char *writer_take(kd_writer *w, size_t *len)
{
	uint32_t n = (uint32_t)(w->sb.size - KD_FRAME_HDR);
	uint8_t *b = (uint8_t *)w->sb.data;
	b[0] = (uint8_t)(n >> 24);
	b[1] = (uint8_t)(n >> 16);
	b[2] = (uint8_t)(n >> 8);
	b[3] = (uint8_t)n;
	*len = w->sb.size;
	return msgpack_sbuffer_release(&w->sb);
}

void writer_destroy(kd_writer *w)
{
	msgpack_sbuffer_destroy(&w->sb);
}
