//! The positions of this process's steps with commands in its relay's log, and
//! the watermark below which all of them are published.
//!
//! A step takes a position before it commits and keeps it open until every one
//! of its commands has been handed to its transport (or its failure recorded),
//! or until it is known not to have been written. The watermark is the lowest
//! open position, or the next one when none is open: it never passes a command
//! that is committed, or being committed, and not yet published.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

use crate::ports::{StoreError, EPOCH_SHIFT};

/// How long a step waits for its relay to have an epoch (only at start-up).
const OPEN_WAIT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Log {
    epoch: Option<u64>,
    next: u64,
    /// position → commands not yet handed over
    open: BTreeMap<u64, usize>,
    /// How often a step found the relay taken over, and whether no watermark
    /// has been written since the last time.
    suspensions: u64,
    suspended: bool,
}

pub(crate) struct Positions {
    log: Mutex<Log>,
    opened: watch::Sender<bool>,
}

impl Default for Positions {
    fn default() -> Self {
        Self {
            log: Mutex::default(),
            opened: watch::Sender::new(false),
        }
    }
}

impl Positions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().expect("relay positions lock poisoned")
    }

    /// Sets the epoch the store gave this process's relay.
    pub fn open(&self, epoch: u64) {
        self.lock().epoch = Some(epoch);
        self.opened.send_replace(true);
    }

    pub fn epoch(&self) -> Option<u64> {
        self.lock().epoch
    }

    /// A new open position for a step with `commands` commands; waits for the
    /// relay's epoch if it has none yet.
    pub async fn take(&self, commands: usize) -> Result<u64, StoreError> {
        let mut opened = self.opened.subscribe();
        let wait = opened.wait_for(|open| *open);
        if tokio::time::timeout(OPEN_WAIT, wait).await.is_err() {
            return Err(StoreError::Database(
                "the outbox relay is not open: the store has not recorded it".into(),
            ));
        }
        let mut log = self.lock();
        let epoch = log.epoch.expect("opened");
        let position = epoch << EPOCH_SHIFT | log.next;
        log.next += 1;
        log.open.insert(position, commands.max(1));
        Ok(position)
    }

    /// A step at `position` found its relay taken over (its row deleted): no
    /// position is handed out until the relay has written a watermark, which
    /// records it anew.
    pub fn suspend(&self, position: u64) {
        let mut log = self.lock();
        if log.epoch != Some(position >> EPOCH_SHIFT) {
            return;
        }
        log.suspensions += 1;
        log.suspended = true;
        self.opened.send_replace(false);
    }

    /// A count to hand [`Positions::resume`] once a watermark write begun now
    /// has succeeded.
    pub fn suspensions(&self) -> u64 {
        self.lock().suspensions
    }

    /// A watermark was written, begun when [`Positions::suspensions`] said
    /// `seen`: unless a step found the relay taken over since, positions are
    /// handed out again.
    pub fn resume(&self, seen: u64) {
        let mut log = self.lock();
        if log.suspended && log.suspensions == seen {
            log.suspended = false;
            self.opened.send_replace(true);
        }
    }

    /// One command of the step at `position` is handed over.
    pub fn release_one(&self, position: u64) {
        let mut log = self.lock();
        if let Some(left) = log.open.get_mut(&position) {
            *left -= 1;
            if *left == 0 {
                log.open.remove(&position);
            }
        }
    }

    /// The step at `position` is done with: not written, or recovered.
    pub fn release(&self, position: u64) {
        self.lock().open.remove(&position);
    }

    /// Every position below this is released; `None` before the epoch is known.
    pub fn watermark(&self) -> Option<u64> {
        let log = self.lock();
        let epoch = log.epoch?;
        Some(
            log.open
                .keys()
                .next()
                .copied()
                .unwrap_or(epoch << EPOCH_SHIFT | log.next),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_watermark_stops_at_the_lowest_open_position() {
        let p = Positions::default();
        assert_eq!(p.watermark(), None);
        p.open(3);
        let base = 3 << EPOCH_SHIFT;
        assert_eq!(p.watermark(), Some(base));
        let a = p.take(2).await.unwrap();
        let b = p.take(1).await.unwrap();
        assert_eq!((a, b), (base, base + 1));
        assert_eq!(p.watermark(), Some(a));
        p.release_one(b);
        assert_eq!(p.watermark(), Some(a), "a is still open");
        p.release_one(a);
        assert_eq!(p.watermark(), Some(a), "one of a's two commands is left");
        p.release_one(a);
        assert_eq!(p.watermark(), Some(base + 2));
        let c = p.take(1).await.unwrap();
        p.release(c);
        assert_eq!(p.watermark(), Some(base + 3));
    }

    #[tokio::test]
    async fn a_relay_taken_over_hands_out_positions_after_a_later_watermark() {
        let p = std::sync::Arc::new(Positions::default());
        p.open(2);
        let a = p.take(1).await.unwrap();
        let written_before = p.suspensions();
        p.suspend(a);
        p.suspend(1 << EPOCH_SHIFT); // another epoch's step: no effect
        let taking = tokio::spawn({
            let p = p.clone();
            async move { p.take(1).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        p.resume(written_before);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !taking.is_finished(),
            "a write begun before the takeover was found does not count"
        );
        p.resume(p.suspensions());
        assert_eq!(taking.await.unwrap().unwrap(), a + 1);
        assert_eq!(p.watermark(), Some(a), "a is still open until released");
    }

    #[tokio::test]
    async fn a_step_waits_for_the_epoch() {
        let p = std::sync::Arc::new(Positions::default());
        let taking = tokio::spawn({
            let p = p.clone();
            async move { p.take(1).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!taking.is_finished());
        p.open(1);
        assert_eq!(taking.await.unwrap().unwrap(), 1 << EPOCH_SHIFT);
    }
}
