#include "config.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "partitioner.h"

void config_defaults(kd_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->socket_path = strdup("/run/kafkad/kafkad.sock");
	cfg->socket_mode = 0660;
	cfg->log_level = KD_LOG_INFO;
	cfg->max_connections = 4096;
	cfg->max_frame = 16u << 20;
	cfg->max_batch = 100000;
	cfg->max_pending = 262144;
	cfg->max_parked = 1024;
	cfg->write_high_water = 8u << 20;
	cfg->shutdown_timeout_ms = 10000;
	cfg->consumer_linger_ms = 10000;
	cfg->consumer_buffer_bytes = (size_t)512 << 20;
}

static void free_props(kd_prop *p)
{
	while (p) {
		kd_prop *next = p->next;
		free(p->key);
		free(p->value);
		free(p);
		p = next;
	}
}

static void free_consumers(kd_consumer_conf *k)
{
	while (k) {
		kd_consumer_conf *n = k->next;
		for (uint32_t i = 0; i < k->n_topics; i++)
			free(k->topics[i]);
		free(k->topics);
		free(k->name);
		free(k->cluster);
		free(k->group);
		free(k->assignor);
		free(k->auto_offset_reset);
		free(k->zookeeper_connect);
		free(k);
		k = n;
	}
}

void config_free(kd_config *cfg)
{
	if (cfg == NULL)
		return;
	free_consumers(cfg->consumers);
	kd_cluster_conf *c = cfg->clusters;
	while (c) {
		kd_cluster_conf *cn = c->next;
		kd_topic_conf *t = c->topics;
		while (t) {
			kd_topic_conf *tn = t->next;
			free(t->name);
			free_props(t->props);
			free(t);
			t = tn;
		}
		free(c->name);
		free(c->bootstrap);
		free_props(c->props);
		free(c);
		c = cn;
	}
	free(cfg->path);
	free(cfg->socket_path);
	free(cfg->socket_group);
	free(cfg->default_cluster);
	memset(cfg, 0, sizeof(*cfg));
}

kd_cluster_conf *config_cluster(const kd_config *cfg, const char *name, size_t len)
{
	for (kd_cluster_conf *c = cfg->clusters; c; c = c->next)
		if (strlen(c->name) == len && memcmp(c->name, name, len) == 0)
			return c;
	return NULL;
}

kd_topic_conf *config_topic(const kd_cluster_conf *cc, const char *name)
{
	for (kd_topic_conf *t = cc->topics; t; t = t->next)
		if (strcmp(t->name, name) == 0)
			return t;
	return NULL;
}

/* Parser state; `line` is the line being looked at. */
struct parse_state {
	kd_config *cfg;
	const char *name;
	int line;
	char *err;
	size_t errlen;
	bool failed;
	int section_line;      /* line of the current [section] header */
	int default_line;      /* line that set default_cluster */
};

static int fail(struct parse_state *ps, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(struct parse_state *ps, const char *key, const char *fmt, ...)
{
	if (ps->failed)
		return 0;
	ps->failed = true;
	int n = snprintf(ps->err, ps->errlen, "%s:%d: %s%s", ps->name, ps->line, key ? key : "", key ? ": " : "");
	if (n < 0 || (size_t)n >= ps->errlen)
		return 0;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ps->err + n, ps->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return 0;
}

static int parse_uint(struct parse_state *ps, const char *key, const char *value, uint64_t min, uint64_t max,
		      int base, uint64_t *out)
{
	char *end = NULL;
	errno = 0;
	unsigned long long v = strtoull(value, &end, base);
	if (errno || end == value || *end != '\0' || value[0] == '-')
		return fail(ps, key, "'%s' is not a number", value);
	if (v < min || v > max)
		return fail(ps, key, "%llu is out of range [%llu, %llu]", v, (unsigned long long)min,
			    (unsigned long long)max);
	*out = v;
	return 1;
}

static int add_prop(kd_prop **head, const char *key, const char *value, int line)
{
	kd_prop *p = calloc(1, sizeof(*p));
	if (!p)
		return 0;
	p->key = strdup(key);
	p->value = strdup(value);
	p->line = line;
	if (!p->key || !p->value) {
		free_props(p);
		return 0;
	}
	while (*head)
		head = &(*head)->next;
	*head = p;
	return 1;
}

static int daemon_key(struct parse_state *ps, const char *key, const char *value)
{
	kd_config *cfg = ps->cfg;
	uint64_t v;
	if (strcmp(key, "socket") == 0) {
		if (value[0] == '\0' || strlen(value) >= 108)
			return fail(ps, key, "socket path must be 1..107 bytes");
		free(cfg->socket_path);
		cfg->socket_path = strdup(value);
		return 1;
	}
	if (strcmp(key, "socket_mode") == 0) {
		if (!parse_uint(ps, key, value, 0, 0777, 8, &v))
			return 0;
		cfg->socket_mode = (mode_t)v;
		return 1;
	}
	if (strcmp(key, "socket_group") == 0) {
		free(cfg->socket_group);
		cfg->socket_group = value[0] ? strdup(value) : NULL;
		return 1;
	}
	if (strcmp(key, "log_level") == 0) {
		int l = log_level_parse(value);
		if (l < 0)
			return fail(ps, key, "unknown level '%s' (error, warn, notice, info, debug)", value);
		cfg->log_level = l;
		return 1;
	}
	if (strcmp(key, "default_cluster") == 0) {
		free(cfg->default_cluster);
		cfg->default_cluster = strdup(value);
		ps->default_line = ps->line;
		return 1;
	}
	static const struct {
		const char *key;
		uint64_t min, max;
		size_t offset;
		int is_size;
	} nums[] = {
		{"max_connections", 1, 1000000, offsetof(kd_config, max_connections), 0},
		{"max_frame", 1024, 256u << 20, offsetof(kd_config, max_frame), 0},
		{"max_batch", 1, 1000000, offsetof(kd_config, max_batch), 0},
		{"max_pending", 1, 100000000, offsetof(kd_config, max_pending), 0},
		{"max_parked", 1, 1000000, offsetof(kd_config, max_parked), 0},
		{"write_high_water", 65536, 1u << 30, offsetof(kd_config, write_high_water), 1},
		{"shutdown_timeout_ms", 0, 3600000, offsetof(kd_config, shutdown_timeout_ms), 0},
		{"consumer_linger_ms", 0, 86400000, offsetof(kd_config, consumer_linger_ms), 0},
		{"consumer_buffer_bytes", 1u << 20, (uint64_t)1 << 40, offsetof(kd_config, consumer_buffer_bytes), 1},
	};
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
		if (strcmp(key, nums[i].key) != 0)
			continue;
		if (!parse_uint(ps, key, value, nums[i].min, nums[i].max, 10, &v))
			return 0;
		char *field = (char *)cfg + nums[i].offset;
		if (nums[i].is_size)
			*(size_t *)field = (size_t)v;
		else
			*(uint32_t *)field = (uint32_t)v;
		return 1;
	}
	return fail(ps, key, "unknown key in [daemon]");
}

static bool valid_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '.' ||
		      *s == '_' || *s == '-'))
			return false;
	return true;
}

static kd_cluster_conf *get_cluster(struct parse_state *ps, const char *name, bool create)
{
	kd_cluster_conf *c = config_cluster(ps->cfg, name, strlen(name));
	if (c || !create)
		return c;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->name = strdup(name);
	c->line = ps->section_line;
	kd_cluster_conf **tail = &ps->cfg->clusters;
	while (*tail)
		tail = &(*tail)->next;
	*tail = c;
	return c;
}

/* Checks a librdkafka property on a scratch conf so typos fail at load time. */
static int check_rdkafka_prop(struct parse_state *ps, const char *key, const char *value, bool topic_level)
{
	char errstr[512];
	rd_kafka_conf_res_t r;
	if (strcmp(key, "partitioner") == 0) {
		if (partitioner_parse(value) < 0)
			return fail(ps, key, "unknown partitioner '%s' (%s)", value, partitioner_names());
		return 1;
	}
	if (topic_level) {
		rd_kafka_topic_conf_t *tc = rd_kafka_topic_conf_new();
		r = rd_kafka_topic_conf_set(tc, key, value, errstr, sizeof(errstr));
		rd_kafka_topic_conf_destroy(tc);
	} else {
		rd_kafka_conf_t *c = rd_kafka_conf_new();
		r = rd_kafka_conf_set(c, key, value, errstr, sizeof(errstr));
		rd_kafka_conf_destroy(c);
	}
	if (r != RD_KAFKA_CONF_OK)
		return fail(ps, key, "%.*s", (int)strcspn(errstr, "\r\n"), errstr); /* librdkafka may end it with \n */
	return 1;
}

static int cmp_strp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int consumer_key(struct parse_state *ps, const char *name, const char *key, const char *value)
{
	if (!valid_name(name))
		return fail(ps, NULL, "[consumer %s]: consumer name must be [A-Za-z0-9._-]+", name);
	kd_consumer_conf *k = ps->cfg->consumers, **tail = &ps->cfg->consumers;
	for (; k && strcmp(k->name, name) != 0; k = k->next)
		tail = &k->next;
	if (!k) {
		k = calloc(1, sizeof(*k));
		if (!k || !(k->name = strdup(name))) {
			free(k);
			return fail(ps, key, "out of memory");
		}
		k->line = ps->section_line;
		*tail = k;
	}
	if (strcmp(key, "cluster") == 0) {
		free(k->cluster);
		k->cluster = strdup(value);
	} else if (strcmp(key, "mode") == 0) {
		if (strcmp(value, "group") != 0 && strcmp(value, "zookeeper") != 0)
			return fail(ps, key, "declared consumers are group members: mode must be 'group' or 'zookeeper'");
		k->zookeeper = strcmp(value, "zookeeper") == 0;
	} else if (strcmp(key, "zookeeper_connect") == 0) {
		if (!value[0] || strlen(value) > 1000)
			return fail(ps, key, "expected host:port[,host:port...][/chroot]");
		free(k->zookeeper_connect);
		k->zookeeper_connect = strdup(value);
	} else if (strcmp(key, "zookeeper_owners_layout") == 0) {
		if (strcmp(value, "pykafka-py3") && strcmp(value, "topic"))
			return fail(ps, key, "must be pykafka-py3 or topic");
		k->zk_topic_layout = strcmp(value, "topic") == 0;
	} else if (strcmp(key, "zookeeper_session_timeout_ms") == 0 || strcmp(key, "rebalance_backoff_ms") == 0) {
		uint64_t v;
		bool session = key[0] == 'z';
		if (!parse_uint(ps, key, value, session ? 1000 : 0, 600000, 10, &v))
			return 0;
		*(session ? &k->zookeeper_session_timeout_ms : &k->rebalance_backoff_ms) = (uint32_t)v;
	} else if (strcmp(key, "group") == 0) {
		if (!value[0])
			return fail(ps, key, "must not be empty");
		free(k->group);
		k->group = strdup(value);
	} else if (strcmp(key, "topics") == 0) {
		char *copy = strdup(value), *save = NULL;
		for (char *t = strtok_r(copy, ", ", &save); t; t = strtok_r(NULL, ", ", &save)) {
			if (!valid_name(t)) {
				free(copy);
				return fail(ps, key, "'%s' is not a valid topic name", t);
			}
			char **nt = realloc(k->topics, (k->n_topics + 1) * sizeof(char *));
			if (!nt) {
				free(copy);
				return fail(ps, key, "out of memory");
			}
			k->topics = nt;
			k->topics[k->n_topics++] = strdup(t);
		}
		free(copy);
		qsort(k->topics, k->n_topics, sizeof(char *), cmp_strp);
	} else if (strcmp(key, "assignor") == 0) {
		if (strcmp(value, "range") && strcmp(value, "roundrobin") && strcmp(value, "cooperative-sticky"))
			return fail(ps, key, "must be range, roundrobin or cooperative-sticky");
		free(k->assignor);
		k->assignor = strdup(value);
	} else if (strcmp(key, "auto_offset_reset") == 0) {
		if (strcmp(value, "earliest") && strcmp(value, "latest"))
			return fail(ps, key, "must be earliest or latest");
		free(k->auto_offset_reset);
		k->auto_offset_reset = strdup(value);
	} else if (strcmp(key, "auto_commit_interval_ms") == 0) {
		uint64_t v;
		if (!parse_uint(ps, key, value, 0, 86400000, 10, &v))
			return 0;
		k->auto_commit_interval_ms = (uint32_t)v;
	} else {
		return fail(ps, key, "unknown key in [consumer %s] (cluster, mode, group, topics, assignor, "
				     "auto_offset_reset, auto_commit_interval_ms, zookeeper_connect, "
				     "zookeeper_owners_layout, zookeeper_session_timeout_ms, rebalance_backoff_ms)", name);
	}
	return 1;
}

static int handler(void *user, const char *section, const char *key, const char *value)
{
	struct parse_state *ps = user;
	if (ps->failed)
		return 0;
	if (strcmp(section, "daemon") == 0)
		return daemon_key(ps, key, value);
	if (strncmp(section, "consumer ", 9) == 0)
		return consumer_key(ps, section + 9, key, value);
	if (strncmp(section, "cluster ", 8) == 0) {
		const char *name = section + 8;
		if (!valid_name(name))
			return fail(ps, NULL, "[%s]: cluster name must be [A-Za-z0-9._-]+", section);
		kd_cluster_conf *c = get_cluster(ps, name, true);
		if (!c)
			return fail(ps, key, "out of memory");
		if (strcmp(key, "bootstrap.servers") == 0) {
			if (value[0] == '\0')
				return fail(ps, key, "must not be empty (use 'mock' for the embedded mock cluster)");
			free(c->bootstrap);
			c->bootstrap = strdup(value);
			return 1;
		}
		if (!check_rdkafka_prop(ps, key, value, false))
			return 0;
		return add_prop(&c->props, key, value, ps->line) ? 1 : fail(ps, key, "out of memory");
	}
	if (strncmp(section, "topic ", 6) == 0) {
		const char *spec = section + 6;
		const char *colon = strchr(spec, ':');
		if (!colon || colon == spec || !valid_name(colon + 1))
			return fail(ps, NULL, "[%s]: expected [topic CLUSTER:TOPIC]", section);
		char cname[256];
		size_t n = (size_t)(colon - spec);
		if (n >= sizeof(cname))
			return fail(ps, NULL, "[%s]: cluster name too long", section);
		memcpy(cname, spec, n);
		cname[n] = '\0';
		kd_cluster_conf *c = get_cluster(ps, cname, false);
		if (!c)
			return fail(ps, NULL, "[%s]: cluster '%s' is not defined above", section, cname);
		kd_topic_conf *t = config_topic(c, colon + 1);
		if (!t) {
			t = calloc(1, sizeof(*t));
			if (!t || !(t->name = strdup(colon + 1))) {
				free(t);
				return fail(ps, key, "out of memory");
			}
			kd_topic_conf **tail = &c->topics;
			while (*tail)
				tail = &(*tail)->next;
			*tail = t;
		}
		if (!check_rdkafka_prop(ps, key, value, true))
			return 0;
		return add_prop(&t->props, key, value, ps->line) ? 1 : fail(ps, key, "out of memory");
	}
	return fail(ps, NULL, "unknown section [%s] (expected [daemon], [cluster NAME], [topic CLUSTER:TOPIC] or "
			      "[consumer NAME])",
		    section);
}

static int finish(struct parse_state *ps, int rc)
{
	kd_config *cfg = ps->cfg;
	if (rc != 0 || ps->failed)
		return -1;
	if (cfg->clusters == NULL) {
		ps->line = 0;
		snprintf(ps->err, ps->errlen, "%s: no [cluster NAME] section (at least one is required)", ps->name);
		return -1;
	}
	for (kd_cluster_conf *c = cfg->clusters; c; c = c->next) {
		if (c->bootstrap == NULL) {
			snprintf(ps->err, ps->errlen, "%s:%d: bootstrap.servers: missing in [cluster %s]", ps->name, c->line,
				 c->name);
			return -1;
		}
	}
	if (cfg->default_cluster == NULL) {
		cfg->default_cluster = strdup(cfg->clusters->name);
	} else if (!config_cluster(cfg, cfg->default_cluster, strlen(cfg->default_cluster))) {
		snprintf(ps->err, ps->errlen, "%s:%d: default_cluster: no [cluster %s] section", ps->name, ps->default_line,
			 cfg->default_cluster);
		return -1;
	}
	for (kd_consumer_conf *k = cfg->consumers; k; k = k->next) {
		const char *missing = !k->group		       ? "group"
				      : !k->n_topics		       ? "topics"
				      : k->zookeeper && !k->zookeeper_connect ? "zookeeper_connect"
								       : NULL;
		if (missing) {
			snprintf(ps->err, ps->errlen, "%s:%d: %s: missing in [consumer %s]", ps->name, k->line, missing,
				 k->name);
			return -1;
		}
		const char *bad = NULL;
		if (k->zookeeper && k->n_topics != 1)
			bad = "topics: a zookeeper-mode consumer reads exactly one topic";
		else if (k->zookeeper && k->assignor && strcmp(k->assignor, "cooperative-sticky") == 0)
			bad = "assignor: must be range or roundrobin in zookeeper mode";
		else if (!k->zookeeper && k->zookeeper_connect)
			bad = "zookeeper_connect: needs mode = zookeeper";
		if (bad) {
			snprintf(ps->err, ps->errlen, "%s:%d: %s (in [consumer %s])", ps->name, k->line, bad, k->name);
			return -1;
		}
		if (k->cluster && !config_cluster(cfg, k->cluster, strlen(k->cluster))) {
			snprintf(ps->err, ps->errlen, "%s:%d: cluster: [consumer %s] names no [cluster %s]", ps->name, k->line,
				 k->name, k->cluster);
			return -1;
		}
	}
	if (cfg->max_batch > cfg->max_pending) {
		snprintf(ps->err, ps->errlen, "%s: max_batch: must not exceed max_pending (%u)", ps->name, cfg->max_pending);
		return -1;
	}
	return 0;
}

/* The INI dialect: "[section]" headers, "key = value" lines, comments
 * starting with ';' or '#' (also after whitespace at the end of a value),
 * surrounding whitespace ignored, no line-length limit. Stops at the first
 * problem, so the error names the first bad line. */
static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	char *e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r' || e[-1] == '\n'))
		*--e = '\0';
	return s;
}

static void strip_inline_comment(char *v)
{
	for (char *p = v; *p; p++)
		if ((*p == ';' || *p == '#') && p > v && (p[-1] == ' ' || p[-1] == '\t')) {
			*p = '\0';
			break;
		}
}

static int parse_line(struct parse_state *ps, char *raw, char **section)
{
	char *line = trim(raw);
	if (*line == '\0' || *line == ';' || *line == '#')
		return 1;
	if (*line == '[') {
		char *close = strchr(line, ']');
		if (!close || trim(close + 1)[0] != '\0')
			return fail(ps, NULL, "syntax error: expected [section]");
		*close = '\0';
		free(*section);
		*section = strdup(trim(line + 1));
		ps->section_line = ps->line;
		return *section ? 1 : fail(ps, NULL, "out of memory");
	}
	char *eq = strchr(line, '=');
	if (!eq)
		return fail(ps, NULL, "syntax error: expected key = value");
	*eq = '\0';
	char *key = trim(line), *value = eq + 1;
	strip_inline_comment(value);
	value = trim(value);
	if (*key == '\0')
		return fail(ps, NULL, "syntax error: empty key");
	if (*section == NULL)
		return fail(ps, key, "outside any [section]");
	return handler(ps, *section, key, value);
}

static int parse_stream(struct parse_state *ps, FILE *fp)
{
	char *buf = NULL, *section = NULL;
	size_t cap = 0;
	int rc = 0;
	while (getline(&buf, &cap, fp) >= 0) {
		ps->line++;
		if (!parse_line(ps, buf, &section)) {
			rc = -1;
			break;
		}
	}
	free(buf);
	free(section);
	return rc;
}

int config_load(kd_config *cfg, const char *path, char *err, size_t errlen)
{
	struct parse_state ps = {.cfg = cfg, .name = path, .err = err, .errlen = errlen};
	free(cfg->path);
	cfg->path = strdup(path);
	FILE *fp = fopen(path, "r");
	if (!fp) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	int rc = parse_stream(&ps, fp);
	fclose(fp);
	return finish(&ps, rc);
}

int config_load_string(kd_config *cfg, const char *name, const char *text, char *err, size_t errlen)
{
	struct parse_state ps = {.cfg = cfg, .name = name, .err = err, .errlen = errlen};
	free(cfg->path);
	cfg->path = strdup(name);
	FILE *fp = fmemopen((void *)text, strlen(text), "r");
	if (!fp) {
		snprintf(err, errlen, "%s: cannot read: %s", name, strerror(errno));
		return -1;
	}
	int rc = parse_stream(&ps, fp);
	fclose(fp);
	return finish(&ps, rc);
}
