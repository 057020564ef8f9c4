/* gosight — net/http's ring-buffer records: one per request served
 * (server.bpf.c) and one per request sent (client.bpf.c). The Rust side
 * (`gosight_uprobes::records`) is generated from this file by build.rs.
 */
#pragma once

#include "span_head.h"

#define HTTP_METHOD_CAP 16
#define HTTP_PATH_CAP 256
#define HTTP_PATTERN_CAP 128
#define HTTP_HOST_CAP 128
#define HTTP_REMOTE_CAP 64
#define HTTP_PROTO_CAP 16
#define HTTP_SCHEME_CAP 16
#define HTTP_QUERY_CAP 128

/* Every string is a buffer plus the Go string's full length (a length above the
 * buffer's size means the text was cut). */
struct http_server_record {
	struct span_head head;
	s64 status; /* -1: the writer is not a *response (status unknown); 0: none set */
	u8 tls;
	u8 _pad;
	u16 method_len;
	u16 path_len;
	u16 pattern_len;
	u16 host_len;
	u16 remote_len;
	u16 proto_len;
	u16 _pad2;
	char method[HTTP_METHOD_CAP];
	char path[HTTP_PATH_CAP];
	char pattern[HTTP_PATTERN_CAP];
	char host[HTTP_HOST_CAP];
	char remote[HTTP_REMOTE_CAP];
	char proto[HTTP_PROTO_CAP];
};

struct http_client_record {
	struct span_head head;
	s64 status;    /* -1: no response (transport error) */
	u64 error_tab; /* itab of the returned error; 0 = nil */
	u16 method_len;
	u16 scheme_len;
	u16 host_len;
	u16 path_len;
	u16 query_len;
	u16 _pad[3];
	char method[HTTP_METHOD_CAP];
	char scheme[HTTP_SCHEME_CAP];
	char host[HTTP_HOST_CAP];
	char path[HTTP_PATH_CAP];
	char query[HTTP_QUERY_CAP];
};
