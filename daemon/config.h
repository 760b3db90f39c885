/* config: the INI file (conf/kafkad.conf documents every key).
 *
 *   [daemon]              daemon settings
 *   [cluster NAME]        bootstrap.servers + any librdkafka property
 *   [topic CLUSTER:TOPIC] per-topic librdkafka properties (and `partitioner`)
 *
 * config_load() validates everything it can without connecting, including
 * every librdkafka property (by setting it on a scratch librdkafka conf), and
 * reports the first problem as one line "FILE:LINE: key: message". */
#ifndef KAFKAD_CONFIG_H
#define KAFKAD_CONFIG_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct kd_prop {
	char *key;
	char *value;
	int line;
	struct kd_prop *next;
} kd_prop;

typedef struct kd_topic_conf {
	char *name;
	kd_prop *props; /* in file order */
	struct kd_topic_conf *next;
} kd_topic_conf;

typedef struct kd_cluster_conf {
	char *name;
	int line;           /* line of the section header */
	char *bootstrap;    /* "mock" selects librdkafka's mock cluster */
	kd_prop *props;     /* librdkafka properties other than bootstrap.servers */
	kd_topic_conf *topics;
	struct kd_cluster_conf *next;
} kd_cluster_conf;

/* [consumer NAME]: a Kafka-coordinated consumer the daemon joins at startup
 * and keeps (apps attach to it with a matching consumer_open). */
typedef struct kd_consumer_conf {
	char *name;
	int line;
	char *cluster;   /* NULL: default cluster */
	char *group;
	char **topics;   /* sorted */
	uint32_t n_topics;
	char *assignor;  /* NULL: range */
	char *auto_offset_reset; /* "earliest" or "latest" */
	uint32_t auto_commit_interval_ms;
	bool zookeeper;          /* mode = zookeeper (PyKafka's ZooKeeper-balanced group) */
	char *zookeeper_connect; /* zookeeper mode */
	bool zk_topic_layout;    /* zookeeper_owners_layout = topic */
	uint32_t zookeeper_session_timeout_ms; /* 0: 10000 */
	uint32_t rebalance_backoff_ms;         /* 0: 2000 */
	struct kd_consumer_conf *next;
} kd_consumer_conf;

typedef struct kd_config {
	char *path;
	char *socket_path;
	mode_t socket_mode;
	char *socket_group;     /* NULL: leave the group alone */
	int log_level;
	uint32_t max_connections;
	uint32_t max_frame;
	uint32_t max_batch;
	uint32_t max_pending;
	uint32_t max_parked;
	size_t write_high_water;
	uint32_t shutdown_timeout_ms;
	uint32_t consumer_linger_ms; /* an unattached consumer leaves its group after this */
	size_t consumer_buffer_bytes; /* a consumer's fetched-ahead messages, estimated (pauses past it) */
	char *default_cluster;  /* NULL until loaded: then the first cluster */
	kd_cluster_conf *clusters; /* in file order */
	kd_consumer_conf *consumers; /* declared consumers, in file order */
} kd_config;

/* Fills cfg with defaults (no clusters). */
void config_defaults(kd_config *cfg);
/* Loads and validates path into cfg (which must hold defaults). Returns 0,
 * or -1 with a one-line message in err. cfg must be freed either way. */
int config_load(kd_config *cfg, const char *path, char *err, size_t errlen);
/* Same, from a string (tests); name is used in messages. */
int config_load_string(kd_config *cfg, const char *name, const char *text, char *err, size_t errlen);
void config_free(kd_config *cfg);

kd_cluster_conf *config_cluster(const kd_config *cfg, const char *name, size_t len);
kd_topic_conf *config_topic(const kd_cluster_conf *cc, const char *name);

#endif
