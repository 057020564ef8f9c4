//! go-redis client probe: one CLIENT span per command a `*redis.Client` runs —
//! `(*baseClient).processStartingAt` (v9.23, where `process` is inlined) or
//! `(*baseClient).process` — and one per pipeline (`processPipeline`) or MULTI/EXEC
//! transaction (`processTxPipeline`), listing its commands. Retries happen inside
//! these functions: one span per command whatever the attempts. The connection
//! set-up go-redis runs inside the first command on a new connection (HELLO,
//! CLIENT SETINFO, AUTH, SELECT) makes spans that are children of that command's
//! (calls are kept by their place on the goroutine's stack, `client.bpf.c`). A
//! command interrupted by a panic (a value whose `MarshalBinary` panics) has no
//! span.
//! C program: `client.bpf.c` beside this file; its record: `records.h`.
//!
//! Cost: 2 uprobe hits per command or pipeline (the entry, on the stack check's
//! jump, and the RET taken).
//!
//! Not covered: ClusterClient, Ring and the full-duplex autopipeline, whose
//! commands take other paths.

use crate::records::redis_record;
use crate::span::{read_record, ProbeSpan, TargetInfo};
use crate::{FieldSpec, FunctionSpec, Need, ProbeSpec};

pub const PROCESS: &str = "github.com/redis/go-redis/v9.(*baseClient).processStartingAt|\
                           github.com/redis/go-redis/v9.(*baseClient).process";
pub const PROCESS_PIPELINE: &str = "github.com/redis/go-redis/v9.(*baseClient).processPipeline";
pub const PROCESS_TX_PIPELINE: &str = "github.com/redis/go-redis/v9.(*baseClient).processTxPipeline";

const fn function(symbol: &'static str, entry: &'static str, need: Need) -> FunctionSpec {
    FunctionSpec { symbol, entry_program: Some(entry), return_program: Some("process_return"), need }
}

pub static SPEC: ProbeSpec = ProbeSpec {
    name: "go_redis_client",
    modules: &[&super::MODULE],
    functions: &[
        function(PROCESS, "process_entry", Need::Always),
        function(PROCESS_PIPELINE, "pipeline_entry_plain", Need::IfPresent),
        function(PROCESS_TX_PIPELINE, "pipeline_entry_tx", Need::IfPresent),
    ],
    fields: &[FIELDS],
    addresses: &[],
    object: crate::bpf_object!("go_redis_client"),
    decode,
    kernel_end: None,
    derive: crate::derive_nothing,
};

const fn redis_field(global: &'static str, strukt: &'static str, field: &'static str, required: bool) -> FieldSpec {
    FieldSpec { global, strukt, field, required }
}

const FIELDS: &[FieldSpec] = &[
    // Without the command's arguments a span would have no name.
    redis_field("off_cmd_args", "github.com/redis/go-redis/v9.baseCmd", "args", true),
    redis_field("off_cmd_err", "github.com/redis/go-redis/v9.baseCmd", "err", false),
    redis_field("off_client_opt", "github.com/redis/go-redis/v9.baseClient", "opt", false),
    redis_field("off_options_addr", "github.com/redis/go-redis/v9.Options", "Addr", false),
    redis_field("off_options_db", "github.com/redis/go-redis/v9.Options", "DB", false),
];

/// The CLIENT span of one command, pipeline or transaction.
fn decode(bytes: &[u8], target: &dyn TargetInfo) -> Option<ProbeSpan> {
    let r: redis_record = read_record(bytes)?;
    super::command::span(&r, target)
}
