//! What the propagation programs counted, per target and in all. The indices are
//! those `records.h` declares (`C_*`, generated into [`crate::records`]); the
//! names are the ones the log lines print.

use crate::records as r;

/// Counter names (the ones the log lines print) by their index in `records.h`.
pub const NAMES: [(&str, r::propagation_counter); N] = [
    ("enrolled", r::C_ENROLLED),
    ("existing_enrolled", r::C_EXISTING_ENROLLED),
    ("existing_busy", r::C_EXISTING_BUSY),
    ("kept_http1", r::C_KEPT_HTTP1),
    ("kept_h2", r::C_KEPT_H2),
    ("released", r::C_RELEASED),
    ("tls", r::C_TLS),
    ("fastopen", r::C_FASTOPEN),
    ("inserted", r::C_INSERTED),
    ("h2_inserted", r::C_H2_INSERTED),
    ("replaced_malformed", r::C_REPLACED),
    ("kept_valid", r::C_KEPT_VALID),
    ("held_by_other", r::C_HELD),
    ("insert_failed", r::C_INSERT_FAILED),
    ("h2_unaligned", r::C_H2_UNALIGNED),
    ("h2_lost", r::C_H2_LOST),
    ("not_request", r::C_NOT_REQUEST),
    ("stale", r::C_STALE),
    ("h2_skipped", r::C_H2_SKIPPED),
    ("add_failed", r::C_ADD_FAILED),
    ("kept_kafka", r::C_KEPT_KAFKA),
    ("kafka_inserted", r::C_KAFKA_INSERTED),
    ("kafka_kept_own", r::C_KAFKA_KEPT_OWN),
    ("kafka_compressed", r::C_KAFKA_COMPRESSED),
    ("kafka_split", r::C_KAFKA_SPLIT),
    ("kafka_unsupported", r::C_KAFKA_UNSUPPORTED),
    ("kafka_too_long", r::C_KAFKA_TOO_LONG),
    ("kafka_bad_batch", r::C_KAFKA_BAD_BATCH),
    ("kafka_failed", r::C_KAFKA_FAILED),
    ("kafka_lost", r::C_KAFKA_LOST),
    ("kafka_stale", r::C_KAFKA_STALE),
    ("kafka_shared", r::C_KAFKA_SHARED),
];

// Every counter of records.h is named, in index order.
const _: () = {
    let mut i = 0;
    while i < N {
        assert!(NAMES[i].1 as usize == i, "NAMES out of records.h's order");
        i += 1;
    }
};

/// Number of counters (`N_COUNTERS`).
pub const N: usize = r::N_COUNTERS as usize;

/// Slots in a target's counter record (`N_SLOTS`, a power of two).
pub const SLOTS: usize = r::N_SLOTS as usize;
const _: () = assert!(std::mem::size_of::<r::target_counts>() == SLOTS * 8 && N <= SLOTS);

/// One set of counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; N]);

macro_rules! getters {
    ($($name:ident = $i:expr),* $(,)?) => {
        impl Counters {
            $(
                #[doc = concat!("`", stringify!($name), "` (`", stringify!($i), "`).")]
                pub fn $name(&self) -> u64 {
                    self.0[$i as usize]
                }
            )*
        }
    };
}

getters! {
    enrolled = r::C_ENROLLED,
    existing_enrolled = r::C_EXISTING_ENROLLED,
    existing_busy = r::C_EXISTING_BUSY,
    kept_http1 = r::C_KEPT_HTTP1,
    kept_h2 = r::C_KEPT_H2,
    released = r::C_RELEASED,
    tls = r::C_TLS,
    fastopen = r::C_FASTOPEN,
    inserted = r::C_INSERTED,
    h2_inserted = r::C_H2_INSERTED,
    replaced_malformed = r::C_REPLACED,
    kept_valid = r::C_KEPT_VALID,
    held_by_other = r::C_HELD,
    insert_failed = r::C_INSERT_FAILED,
    h2_unaligned = r::C_H2_UNALIGNED,
    h2_lost = r::C_H2_LOST,
    not_request = r::C_NOT_REQUEST,
    stale = r::C_STALE,
    h2_skipped = r::C_H2_SKIPPED,
    add_failed = r::C_ADD_FAILED,
    kept_kafka = r::C_KEPT_KAFKA,
    kafka_inserted = r::C_KAFKA_INSERTED,
    kafka_kept_own = r::C_KAFKA_KEPT_OWN,
    kafka_compressed = r::C_KAFKA_COMPRESSED,
    kafka_split = r::C_KAFKA_SPLIT,
    kafka_unsupported = r::C_KAFKA_UNSUPPORTED,
    kafka_too_long = r::C_KAFKA_TOO_LONG,
    kafka_bad_batch = r::C_KAFKA_BAD_BATCH,
    kafka_failed = r::C_KAFKA_FAILED,
    kafka_lost = r::C_KAFKA_LOST,
    kafka_stale = r::C_KAFKA_STALE,
    kafka_shared = r::C_KAFKA_SHARED,
}

impl Counters {
    /// From a target's counter record.
    pub fn from_slots(slots: &[u64; SLOTS]) -> Counters {
        let mut c = [0u64; N];
        c.copy_from_slice(&slots[..N]);
        Counters(c)
    }

    pub fn add(&mut self, other: &Counters) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a += b;
        }
    }

    pub fn saturating_sub(&self, other: &Counters) -> Counters {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a = a.saturating_sub(*b);
        }
        out
    }

    /// `name=value` pairs, every counter, for one log line.
    pub fn fields(&self) -> String {
        NAMES.iter().zip(self.0.iter()).map(|((n, _), v)| format!("{n}={v}")).collect::<Vec<_>>().join(" ")
    }
}
