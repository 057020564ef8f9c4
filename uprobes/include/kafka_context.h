/* gosight — handing a produced Kafka message's span context to the in-kernel
 * insertion of a `traceparent` record header (owned by context_propagation).
 *
 * STUB: the Kafka producer probes call kafka_offer_context for each message
 * they start a PRODUCER span for; the real body comes with the kernel insertion.
 */
#pragma once

#include "go_types.h"
#include "traceparent.h"

/* Offers the span context `sc` of the message whose key and value bytes are at the
 * user-space addresses key (key_len bytes; a nil key: NULL, -1) and value
 * (value_len bytes), in the producing process. */
static __always_inline void kafka_offer_context(const void *key, s64 key_len, const void *value, s64 value_len,
						const struct span_ctx *sc)
{
}
