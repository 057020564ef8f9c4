//! What the propagation programs counted, per target and in all. The indices are
//! those of `sock_state.h` (`C_*`); the names are the ones the log lines print.

/// Counter names in the order of their indices in `sock_state.h`.
pub const NAMES: [&str; N] = [
    "enrolled",
    "existing_enrolled",
    "existing_busy",
    "kept_http1",
    "kept_h2",
    "released",
    "tls",
    "fastopen",
    "inserted",
    "h2_inserted",
    "replaced_malformed",
    "kept_valid",
    "held_by_other",
    "insert_failed",
    "h2_unaligned",
    "h2_lost",
    "not_request",
    "stale",
    "h2_skipped",
    "add_failed",
];

/// Number of counters (`N_COUNTERS`).
pub const N: usize = 20;

/// Slots in a target's counter record (`N_SLOTS`, a power of two).
pub const SLOTS: usize = 32;

/// One set of counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters(pub [u64; N]);

macro_rules! getters {
    ($($name:ident = $i:expr),* $(,)?) => {
        impl Counters {
            $(
                #[doc = concat!("`", stringify!($name), "` (index ", stringify!($i), ").")]
                pub fn $name(&self) -> u64 {
                    self.0[$i]
                }
            )*
        }
    };
}

getters! {
    enrolled = 0,
    existing_enrolled = 1,
    existing_busy = 2,
    kept_http1 = 3,
    kept_h2 = 4,
    released = 5,
    tls = 6,
    fastopen = 7,
    inserted = 8,
    h2_inserted = 9,
    replaced_malformed = 10,
    kept_valid = 11,
    held_by_other = 12,
    insert_failed = 13,
    h2_unaligned = 14,
    h2_lost = 15,
    not_request = 16,
    stale = 17,
    h2_skipped = 18,
    add_failed = 19,
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
        NAMES.iter().zip(self.0.iter()).map(|(n, v)| format!("{n}={v}")).collect::<Vec<_>>().join(" ")
    }
}
