/* gosight — grpc-go's ring-buffer records: one per RPC served (server.bpf.c)
 * and one per RPC made (client.bpf.c). The Rust side (`gosight_uprobes::records`)
 * is generated from this file by build.rs.
 */
#pragma once

#include "span_head.h"
#include "go_net.h"

#define GRPC_METHOD_CAP 128

struct grpc_server_record {
	struct span_head head;
	s32 code; /* gRPC status code sent */
	u16 method_len;
	u16 _pad;
	struct ip_port peer;
	struct ip_port local;
	char method[GRPC_METHOD_CAP]; /* /package.Service/Method */
};

struct grpc_client_record {
	struct span_head head;
	s32 code; /* gRPC status code received (or made up by the client) */
	u16 method_len;
	u16 _pad;
	struct ip_port peer;
	char method[GRPC_METHOD_CAP];
};
