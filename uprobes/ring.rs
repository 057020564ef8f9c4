//! Reading the probes' BPF ring buffers on the tokio reactor.
//!
//! The programs submit records without waking the reader (`include/ring_submit.h`:
//! a wake-up per record cost the traced thread ~8 µs on the development VM), so a
//! ring is read every [`RING_POLL_INTERVAL`], or at once when the kernel wakes the
//! reader because the ring is filling up.

use std::io;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::{interval, Interval, MissedTickBehavior};

use crate::{ProbeSpan, TargetInfo};

/// How often a ring buffer is read when the kernel does not wake its reader: the
/// longest a record waits in the ring. Each program forces a wake-up once an eighth
/// of its ring is waiting, so a burst never has to wait for this.
pub const RING_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// One ring buffer, read in batches: when the kernel wakes us, or every
/// [`RING_POLL_INTERVAL`].
pub struct PolledRing {
    fd: AsyncFd<RingBuf<MapData>>,
    tick: Interval,
}

impl PolledRing {
    /// Must be called within a tokio runtime.
    pub fn new(rb: RingBuf<MapData>) -> io::Result<Self> {
        // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register_with_interest(rb, Interest::READABLE)? };
        let mut tick = interval(RING_POLL_INTERVAL);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        Ok(PolledRing { fd, tick })
    }

    /// Waits for a wake-up or the next poll, then hands every waiting record to `f`
    /// and returns how many there were.
    pub async fn next_batch(&mut self, f: impl FnMut(&[u8])) -> io::Result<usize> {
        tokio::select! {
            guard = self.fd.readable_mut() => {
                // Cleared before draining, never after: a record committed between
                // the end of the drain and a later clear would otherwise sit unread
                // until the next poll.
                guard?.clear_ready();
            }
            _ = self.tick.tick() => {}
        }
        Ok(self.drain(f))
    }

    /// Hands every record waiting now to `f`, without waiting (the last read at
    /// shutdown).
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let rb = self.fd.get_mut();
        let mut n = 0;
        while let Some(item) = rb.next() {
            n += 1;
            f(&item);
        }
        n
    }
}

/// The spans of one attached probe, read from its ring buffer.
pub struct EventReader {
    ring: PolledRing,
    decode: fn(&[u8], &dyn TargetInfo) -> Option<ProbeSpan>,
    malformed: u64,
}

impl EventReader {
    pub(crate) fn new(
        rb: RingBuf<MapData>,
        decode: fn(&[u8], &dyn TargetInfo) -> Option<ProbeSpan>,
    ) -> io::Result<Self> {
        Ok(EventReader { ring: PolledRing::new(rb)?, decode, malformed: 0 })
    }

    /// Waits for records (see [`PolledRing::next_batch`]) and hands the span each
    /// describes to `f`. `target` answers what a record refers to (error types).
    pub async fn next_batch(&mut self, target: &dyn TargetInfo, mut f: impl FnMut(ProbeSpan)) -> io::Result<usize> {
        let (decode, malformed) = (self.decode, &mut self.malformed);
        self.ring
            .next_batch(|item| match decode(item, target) {
                Some(span) => f(span),
                None => *malformed += 1,
            })
            .await
    }

    /// The spans waiting now, without waiting (the last read before detaching).
    pub fn drain(&mut self, target: &dyn TargetInfo, mut f: impl FnMut(ProbeSpan)) -> usize {
        let (decode, malformed) = (self.decode, &mut self.malformed);
        self.ring.drain(|item| match decode(item, target) {
            Some(span) => f(span),
            None => *malformed += 1,
        })
    }

    /// Records that did not decode (a size mismatch between C and Rust: a bug).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}
