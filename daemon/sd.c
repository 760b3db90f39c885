#include "sd.h"

#include <stdarg.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "log.h"

int sd_listen_socket(void)
{
	int n = sd_listen_fds(1);
	if (n <= 0)
		return -1;
	if (n > 1)
		log_warn("systemd passed %d sockets; using the first", n);
	return SD_LISTEN_FDS_START;
}

void sd_ready(const char *status)
{
	sd_notifyf(0, "READY=1\nSTATUS=%s", status);
}

void sd_status(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	sd_notifyf(0, "STATUS=%s", buf);
}

void sd_stopping(void)
{
	sd_notify(0, "STOPPING=1\nSTATUS=flushing producers");
}

uint64_t sd_watchdog_interval_ms(void)
{
	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) <= 0)
		return 0;
	return usec / 2000;
}

void sd_watchdog_ping(void)
{
	sd_notify(0, "WATCHDOG=1");
}
