//! Async reading of a probe's BPF ring buffer on the tokio reactor.

use std::io;

use aya::maps::{MapData, RingBuf};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::{ProbeSpan, TargetInfo};

/// The spans of one attached probe, read as the ring buffer signals data.
pub struct EventReader {
    fd: AsyncFd<RingBuf<MapData>>,
    decode: fn(&[u8], &dyn TargetInfo) -> Option<ProbeSpan>,
    malformed: u64,
}

impl EventReader {
    pub(crate) fn new(
        rb: RingBuf<MapData>,
        decode: fn(&[u8], &dyn TargetInfo) -> Option<ProbeSpan>,
    ) -> io::Result<Self> {
        // SAFETY: the ring buffer's fd stays open for as long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register_with_interest(rb, Interest::READABLE)? };
        Ok(EventReader { fd, decode, malformed: 0 })
    }

    /// Waits for records and hands the span each describes to `f`; returns after
    /// draining. `target` answers what a record refers to (error types).
    pub async fn next_batch(&mut self, target: &dyn TargetInfo, mut f: impl FnMut(ProbeSpan)) -> io::Result<usize> {
        let mut guard = self.fd.readable_mut().await?;
        // Clear first: a record committed while we drain signals again, instead of
        // its wake-up being cleared after the drain missed it.
        guard.clear_ready();
        let rb = guard.get_inner_mut();
        let mut n = 0;
        while let Some(item) = rb.next() {
            match (self.decode)(&item, target) {
                Some(ev) => {
                    n += 1;
                    f(ev)
                }
                None => self.malformed += 1,
            }
        }
        Ok(n)
    }

    /// Records that did not decode (a size mismatch between C and Rust: a bug).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}
