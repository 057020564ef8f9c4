//! github.com/redis/go-redis/v9: the client probe (`client.bpf.c`, a CLIENT span
//! per command, pipeline and MULTI/EXEC transaction a `*redis.Client` runs), its
//! record (`records.h`), and the span a record describes ([`command`]: the
//! stable database semantic conventions for Redis). The probed functions,
//! registers and layouts are studied in `tests/go-apps/redisapp/PROBING.md`; the
//! offsets-tracker measures the layouts with the program in `tracker/`. Test app:
//! `tests/go-apps/redisapp`.

pub mod client;
pub mod command;

/// go-redis v9, as the offsets-tracker measures it (from the release in use in
/// December 2024).
pub static MODULE: crate::GoModule = crate::GoModule {
    path: "github.com/redis/go-redis/v9",
    short: "goredis",
    oldest: "v9.7.0",
    program: &[("go.mod", include_str!("tracker/go.mod")), ("main.go", include_str!("tracker/main.go"))],
};
