/* gosight — the go-redis client probe's ring-buffer record: one per command, and
 * one per pipeline or MULTI/EXEC transaction, that a github.com/redis/go-redis/v9
 * client runs (client.bpf.c). The Rust side (`gosight_uprobes::records`) is
 * generated from this file by build.rs.
 */
#pragma once

#include "span_head.h"

#define REDIS_NAME_CAP 32   /* a command's name */
#define REDIS_SUB_CAP 16    /* its first argument (a sub-command) */
#define REDIS_BATCH_CAP 32  /* commands of a pipeline listed (the count is the real one) */
#define REDIS_ADDR_CAP 64   /* Options.Addr */
#define REDIS_ERROR_CAP 128 /* the error's message */

/* Which probed function the span comes from. */
enum redis_call_kind {
	REDIS_COMMAND = 0,  /* (*baseClient).processStartingAt (v9.23) / process: one command */
	REDIS_PIPELINE = 1, /* (*baseClient).processPipeline */
	REDIS_TX = 2,       /* (*baseClient).processTxPipeline: MULTI, the commands, EXEC */
};

/* One command: its name (args[0], lower case as go-redis writes it), its first
 * argument when that is a string (the decoder keeps it only as the sub-command of
 * a container command: CONFIG GET), and its number of arguments, name included. */
struct redis_command {
	u32 args;
	u8 name_len; /* the Go string's length (above the buffer: cut); 0 = not a string */
	u8 sub_len;
	u16 _pad;
	char name[REDIS_NAME_CAP];
	char sub[REDIS_SUB_CAP];
};

struct redis_record {
	struct span_head head;
	u8 kind;     /* enum redis_call_kind */
	u8 _pad;
	u16 addr_len;
	u16 count;   /* commands in the pipeline (1 for a command); cmds holds the first */
	u16 error_len;
	s64 db;      /* Options.DB; -1 = unknown */
	u64 error_tab; /* itab of the error (the first command error that is not
			* redis.Nil for a pipeline, else the returned one); 0 = nil */
	char addr[REDIS_ADDR_CAP];
	char error[REDIS_ERROR_CAP]; /* the string at the error's data pointer: the
				      * message of go-redis's own error types */
	struct redis_command cmds[REDIS_BATCH_CAP];
};
