//! Kernel timestamps to wall-clock time.
//!
//! The probes stamp events with `bpf_ktime_get_ns`, which is CLOCK_MONOTONIC. The
//! offset to CLOCK_REALTIME is estimated by reading REALTIME, MONOTONIC, REALTIME
//! many times in a row and keeping the tightest bracket, so the error is bounded by
//! half of that bracket (typically well under a microsecond). NTP slews the wall
//! clock, so the estimate is refreshed periodically while running.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn now_ns(clock: libc::clockid_t) -> i64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; both clocks exist on every Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Nanoseconds of the monotonic clock the probes use.
pub fn monotonic_ns() -> u64 {
    now_ns(libc::CLOCK_MONOTONIC) as u64
}

/// One estimate of REALTIME - MONOTONIC.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    pub offset_ns: i64,
    /// Width of the tightest REALTIME bracket around the MONOTONIC read.
    pub uncertainty_ns: i64,
}

/// Samples the clocks `rounds` times and keeps the tightest bracket.
pub fn estimate(rounds: usize) -> Estimate {
    let mut best = Estimate { offset_ns: 0, uncertainty_ns: i64::MAX };
    for _ in 0..rounds.max(1) {
        let r1 = now_ns(libc::CLOCK_REALTIME);
        let m = now_ns(libc::CLOCK_MONOTONIC);
        let r2 = now_ns(libc::CLOCK_REALTIME);
        let width = r2 - r1;
        if width >= 0 && width < best.uncertainty_ns {
            best = Estimate { offset_ns: r1 + width / 2 - m, uncertainty_ns: width };
        }
    }
    best
}

/// Converts probe timestamps to wall-clock time; cheap to clone and share.
#[derive(Debug, Clone)]
pub struct Clock {
    offset_ns: Arc<AtomicI64>,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { offset_ns: Arc::new(AtomicI64::new(estimate(200).offset_ns)) }
    }

    /// Re-estimates the offset; returns how far it moved (ns).
    pub fn refresh(&self) -> i64 {
        let e = estimate(200);
        let old = self.offset_ns.swap(e.offset_ns, Ordering::Relaxed);
        e.offset_ns - old
    }

    /// Keeps the estimate fresh until the runtime stops.
    pub fn spawn_refresh(&self, every: Duration) -> tokio::task::JoinHandle<()> {
        let clock = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tick.tick().await;
                let moved = clock.refresh();
                if moved.abs() > 1_000_000 {
                    tracing::info!(moved_us = moved / 1000, "wall clock moved against the monotonic clock");
                }
            }
        })
    }

    /// Wall-clock time of a CLOCK_MONOTONIC timestamp in nanoseconds.
    pub fn to_system_time(&self, monotonic_ns: u64) -> SystemTime {
        let wall = monotonic_ns as i64 + self.offset_ns.load(Ordering::Relaxed);
        UNIX_EPOCH + Duration::from_nanos(wall.max(0) as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_is_tight_and_converts_now_to_now() {
        let e = estimate(100);
        assert!(e.uncertainty_ns < 1_000_000, "bracket {} ns", e.uncertainty_ns);
        let clock = Clock::new();
        let before = SystemTime::now();
        let t = clock.to_system_time(monotonic_ns());
        let after = SystemTime::now();
        let slack = Duration::from_micros(200);
        assert!(t + slack >= before && t <= after + slack, "{t:?} not in [{before:?}, {after:?}]");
    }
}
