/* sd: systemd integration (socket activation, sd_notify, watchdog). All
 * calls are no-ops when not started by systemd. */
#ifndef KAFKAD_SD_H
#define KAFKAD_SD_H

#include <stdint.h>

/* Returns the listening socket passed by systemd, or -1 when none. */
int sd_listen_socket(void);
void sd_ready(const char *status);
void sd_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sd_stopping(void);
/* Watchdog interval in ms (half of WatchdogSec), or 0 when not enabled. */
uint64_t sd_watchdog_interval_ms(void);
void sd_watchdog_ping(void);

#endif
