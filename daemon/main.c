/* kafkad: per-host Kafka sidecar daemon. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "daemon.h"
#include "log.h"

static void usage(FILE *out)
{
	fprintf(out,
		"usage: kafkad [-c FILE] [--check-config] [-v] [-h]\n"
		"  -c, --config FILE   configuration file (default /etc/kafkad/kafkad.conf)\n"
		"      --check-config  load and validate the configuration, then exit\n"
		"  -d, --debug         log at debug level (overrides log_level)\n"
		"  -V, --version       print the version\n"
		"  -h, --help          this help\n");
}

int main(int argc, char **argv)
{
	const char *path = "/etc/kafkad/kafkad.conf";
	bool check_only = false, debug = false;
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'}, {"check-config", no_argument, NULL, 'C'},
		{"debug", no_argument, NULL, 'd'},        {"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "c:dVh", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 'C':
			check_only = true;
			break;
		case 'd':
			debug = true;
			break;
		case 'V':
			printf("kafkad %s\n", KAFKAD_VERSION);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "kafkad: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}
	kd_config cfg;
	config_defaults(&cfg);
	char err[1024];
	if (config_load(&cfg, path, err, sizeof(err)) != 0) {
		fprintf(stderr, "kafkad: %s\n", err);
		config_free(&cfg);
		return 1;
	}
	if (debug)
		cfg.log_level = KD_LOG_DEBUG;
	if (check_only) {
		int n = 0;
		for (kd_cluster_conf *c = cfg.clusters; c; c = c->next)
			n++;
		printf("%s: OK (%d cluster%s, socket %s)\n", path, n, n == 1 ? "" : "s", cfg.socket_path);
		config_free(&cfg);
		return 0;
	}
	int rc = daemon_run(&cfg);
	config_free(&cfg);
	return rc;
}
