/* ops: the handlers behind the op table, and the parts of a session's
 * state machine that belong to them (parked polls, flushes, held produces). */
#ifndef KAFKAD_OPS_H
#define KAFKAD_OPS_H

#include "dispatch.h"
#include "producer.h"

void op_hello(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_ping(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_metadata(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_produce(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_poll_reports(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_flush(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_stats(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_consumer_open(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_consume(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_commit(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_committed(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_seek(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_watermarks(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_offsets_for_times(kd_session *s, const kd_request *req, const char *payload, uint32_t len);
void op_consumer_close(kd_session *s, const kd_request *req, const char *payload, uint32_t len);

/* The consumer layer's upward callbacks (opaque: the kd_daemon). */
#include "consumer.h"
extern const kd_consumer_events ops_consumer_events;
/* Connection closing: detach its consumers (partitions move on, rewound). */
void ops_consumer_detach_all(kd_session *s);

/* Answers an ack=wait produce whose messages all have outcomes. */
void ops_answer_waiter(kd_session *s, const kd_waiter *w);
/* Resumes held work and answers parked requests that can be answered. */
void ops_session_changed(kd_session *s);
/* Frees every held produce (shutdown of a closed connection). */
void ops_release_held(kd_session *s);
/* Messages of the held produces not yet enqueued. */
uint64_t ops_held_messages(const kd_session *s);

#endif
