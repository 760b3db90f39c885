#include "dispatch.h"

#include <string.h>

#include "errors.h"
#include "ops.h"
#include "session.h"

/* Keep in sync with protocol/ops.json: tests/c/test_dispatch.c checks both. */
static const kd_op op_table[] = {
	{"hello", op_hello},
	{"ping", op_ping},
	{"metadata", op_metadata},
	{"produce", op_produce},
	{"poll_reports", op_poll_reports},
	{"flush", op_flush},
	{"stats", op_stats},
	{"consumer_open", op_consumer_open},
	{"consume", op_consume},
	{"commit", op_commit},
	{"committed", op_committed},
	{"seek", op_seek},
	{"watermarks", op_watermarks},
	{"offsets_for_times", op_offsets_for_times},
	{"consumer_close", op_consumer_close},
	{NULL, NULL},
};

const kd_op *dispatch_ops(void) { return op_table; }

const kd_op *dispatch_find(const char *name, uint32_t len)
{
	for (const kd_op *op = op_table; op->name; op++)
		if (codec_str_eq(name, len, op->name))
			return op;
	return NULL;
}

void dispatch_request(kd_session *s, const kd_request *req, const char *payload, uint32_t len)
{
	const kd_op *op = dispatch_find(req->op, req->op_len);
	if (op == NULL) {
		char q[KD_QUOTE_MAX];
		session_reply_error(s, req, KD_ERR_UNKNOWN_OP, "unknown op '%s'", codec_quote(q, sizeof(q), req->op, req->op_len));
		return;
	}
	op->handler(s, req, payload, len);
}
