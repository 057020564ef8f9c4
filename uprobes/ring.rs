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
    pub async fn next_batch(&mut self, target: &dyn TargetInfo, f: impl FnMut(ProbeSpan)) -> io::Result<usize> {
        let mut guard = self.fd.readable_mut().await?;
        // Clear first: a record committed while we drain signals again, instead of
        // its wake-up being cleared after the drain missed it.
        guard.clear_ready();
        Ok(drain_ring(guard.get_inner_mut(), self.decode, &mut self.malformed, target, f))
    }

    /// Hands over the records waiting now, without waiting for more: the last
    /// read, once the probe's uprobes are detached and nothing can come after.
    pub fn drain(&mut self, target: &dyn TargetInfo, f: impl FnMut(ProbeSpan)) -> usize {
        drain_ring(self.fd.get_mut(), self.decode, &mut self.malformed, target, f)
    }

    /// Records that did not decode (a size mismatch between C and Rust: a bug).
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

fn drain_ring(
    rb: &mut RingBuf<MapData>,
    decode: fn(&[u8], &dyn TargetInfo) -> Option<ProbeSpan>,
    malformed: &mut u64,
    target: &dyn TargetInfo,
    mut f: impl FnMut(ProbeSpan),
) -> usize {
    let mut n = 0;
    while let Some(item) = rb.next() {
        match decode(&item, target) {
            Some(ev) => {
                n += 1;
                f(ev)
            }
            None => *malformed += 1,
        }
    }
    n
}
