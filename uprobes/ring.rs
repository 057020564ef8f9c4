//! Async reading of a probe's BPF ring buffer on the tokio reactor, woken once per
//! batch of records rather than once per record (the kernel side is
//! `include/ring_batch.h`).
//!
//! The reader sleeps on the ring's readiness only after a read found nothing; it
//! first sets `reader_waiting`, so the next record wakes it. While records keep
//! coming it reads every [`POLL_INTERVAL`] instead, and the kernel stays quiet
//! (a ring an eighth full still wakes it). Under load that is ~100 wake-ups a second
//! per ring instead of one per record.

use std::io;
use std::time::Duration;

use aya::maps::{Array, MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::{ProbeSpan, TargetInfo};

/// How long records may wait in the ring while the reader is busy: what a span or
/// connection record can be delayed by.
pub const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A ring buffer and its reader's wake-up flag, read in batches.
pub(crate) struct BatchedRing {
    fd: AsyncFd<RingBuf<MapData>>,
    /// `reader_waiting` (None for an object without it: woken per record).
    waiting: Option<Array<MapData, u32>>,
    /// Reading on the timer (records came at the last read).
    polling: bool,
}

impl BatchedRing {
    /// `waiting` is the object's `reader_waiting` map, if it has one.
    pub(crate) fn new(rb: RingBuf<MapData>, waiting: Option<aya::maps::Map>) -> io::Result<Self> {
        // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register_with_interest(rb, Interest::READABLE)? };
        let waiting = match waiting.map(Array::<MapData, u32>::try_from).transpose() {
            Ok(w) => w,
            Err(e) => return Err(io::Error::other(format!("reader_waiting: {e}"))),
        };
        let mut ring = BatchedRing { fd, waiting, polling: false };
        ring.set_waiting(true);
        Ok(ring)
    }

    fn set_waiting(&mut self, on: bool) {
        if let Some(w) = &mut self.waiting {
            if let Err(e) = w.set(0, u32::from(on), 0) {
                // Without the flag the kernel wakes the reader at an eighth-full
                // ring only: read on the timer from now on.
                tracing::warn!("ring buffer reader: cannot set reader_waiting ({e}); reading on a timer");
                self.waiting = None;
                self.polling = true;
            }
        }
    }

    /// Waits for records and hands each one's bytes to `f`; returns the number
    /// read (at least one).
    pub(crate) async fn next_batch(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<usize> {
        loop {
            if self.polling {
                tokio::select! {
                    g = self.fd.readable_mut() => g?.clear_ready(),
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                }
            } else {
                // Readiness is cleared before draining, never after: a record
                // committed while we drain signals again instead of being missed.
                self.fd.readable_mut().await?.clear_ready();
            }
            let n = self.drain(&mut f);
            if n > 0 {
                // Records came: read again after the interval, kernel quiet.
                self.polling = self.waiting.is_some() || self.polling;
                return Ok(n);
            }
            if self.polling && self.waiting.is_some() {
                // Nothing since the last read: ask for a wake-up, then read once
                // more for a record committed before the flag was set.
                self.polling = false;
                self.set_waiting(true);
                let n = self.drain(&mut f);
                if n > 0 {
                    self.polling = true;
                    return Ok(n);
                }
            }
        }
    }

    /// Reads what the ring holds now, without waiting.
    pub(crate) fn drain(&mut self, f: &mut impl FnMut(&[u8])) -> usize {
        let rb = self.fd.get_mut();
        let mut n = 0;
        while let Some(item) = rb.next() {
            n += 1;
            f(&item);
        }
        n
    }
}

/// The spans of one attached probe, read in batches.
pub struct EventReader {
    ring: BatchedRing,
    decode: fn(&[u8], &dyn TargetInfo) -> Option<ProbeSpan>,
    malformed: u64,
}

impl EventReader {
    pub(crate) fn new(
        rb: RingBuf<MapData>,
        waiting: Option<aya::maps::Map>,
        decode: fn(&[u8], &dyn TargetInfo) -> Option<ProbeSpan>,
    ) -> io::Result<Self> {
        Ok(EventReader { ring: BatchedRing::new(rb, waiting)?, decode, malformed: 0 })
    }

    /// Waits for records and hands the span each describes to `f`; returns after
    /// draining, with the number of spans. `target` answers what a record refers
    /// to (error types).
    pub async fn next_batch(&mut self, target: &dyn TargetInfo, mut f: impl FnMut(ProbeSpan)) -> io::Result<usize> {
        let mut n = 0;
        let decode = decoding(self.decode, &mut self.malformed, target, &mut n, &mut f);
        self.ring.next_batch(decode).await?;
        Ok(n)
    }

    /// Hands the spans of the records the ring holds now to `f`, without waiting
    /// (the last read, once the probe is detached).
    pub fn drain(&mut self, target: &dyn TargetInfo, mut f: impl FnMut(ProbeSpan)) -> usize {
        let mut n = 0;
        self.ring.drain(&mut decoding(self.decode, &mut self.malformed, target, &mut n, &mut f));
        n
    }

    /// Records that did not decode (a size mismatch between C and Rust: a bug).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

/// A record's bytes → its span, handed to `f` and counted in `n`; a record that
/// does not decode is counted in `malformed`.
fn decoding<'a>(
    decode: fn(&[u8], &dyn TargetInfo) -> Option<ProbeSpan>,
    malformed: &'a mut u64,
    target: &'a dyn TargetInfo,
    n: &'a mut usize,
    f: &'a mut impl FnMut(ProbeSpan),
) -> impl FnMut(&[u8]) + 'a {
    move |item| match decode(item, target) {
        Some(span) => {
            *n += 1;
            f(span)
        }
        None => *malformed += 1,
    }
}
