#include "errors.h"

#include <stddef.h>

static const struct {
	const char *name;
	bool retriable;
} err_table[KD_ERR_MAX_DAEMON] = {
	[KD_ERR_BAD_FRAME] = {"BAD_FRAME", false},
	[KD_ERR_BAD_REQUEST] = {"BAD_REQUEST", false},
	[KD_ERR_UNKNOWN_OP] = {"UNKNOWN_OP", false},
	[KD_ERR_INVALID_ARGUMENT] = {"INVALID_ARGUMENT", false},
	[KD_ERR_UNKNOWN_CLUSTER] = {"UNKNOWN_CLUSTER", false},
	[KD_ERR_UNSUPPORTED_VERSION] = {"UNSUPPORTED_VERSION", false},
	[KD_ERR_TIMED_OUT] = {"TIMED_OUT", true},
	[KD_ERR_INVALID_STATE] = {"INVALID_STATE", false},
	[KD_ERR_SHUTTING_DOWN] = {"SHUTTING_DOWN", true},
	[KD_ERR_NOT_SUPPORTED] = {"NOT_SUPPORTED", false},
	[KD_ERR_INTERNAL] = {"INTERNAL", false},
	[KD_ERR_TOO_LARGE] = {"TOO_LARGE", false},
	[KD_ERR_UNKNOWN_HANDLE] = {"UNKNOWN_HANDLE", false},
	[KD_ERR_NOT_OWNER] = {"NOT_OWNER", false},
	[KD_ERR_NOT_ASSIGNED] = {"NOT_ASSIGNED", false},
};

const char *kd_err_name(int code)
{
	if (code <= 0 || code >= KD_ERR_MAX_DAEMON)
		return NULL;
	return err_table[code].name;
}

bool kd_err_retriable(int code)
{
	if (code <= 0 || code >= KD_ERR_MAX_DAEMON)
		return false;
	return err_table[code].retriable;
}
