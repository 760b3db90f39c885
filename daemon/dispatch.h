/* dispatch: the op table. Maps an op name to its handler; an unknown op is
 * answered with UNKNOWN_OP and the connection stays usable. */
#ifndef KAFKAD_DISPATCH_H
#define KAFKAD_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

typedef struct kd_session kd_session;

/* payload/len: the frame the request was decoded from (a handler that must
 * keep the request beyond this call copies it). */
typedef void (*kd_op_handler)(kd_session *s, const kd_request *req, const char *payload, uint32_t len);

typedef struct kd_op {
	const char *name;
	kd_op_handler handler;
} kd_op;

void dispatch_request(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
/* The op table (for tests and the conformance check); NULL-terminated. */
const kd_op *dispatch_ops(void);
const kd_op *dispatch_find(const char *name, uint32_t len);

#endif
