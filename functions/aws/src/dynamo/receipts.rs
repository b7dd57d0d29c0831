//! What a window remembers of the queue messages it counted, so that SQS's redeliveries are
//! counted once without a claim per event.
//!
//! SQS delivers at least once: a message comes back when the evaluator crashed or timed out
//! after committing some of its windows, or reported it failed because another window's write
//! failed. A redelivered message carries the same events in the same order, so each window
//! keeps, per message, how many of the message's events for it are counted: "the first `n`
//! events of message `m`". A redelivery skips those and counts the rest, window by window, which
//! keeps exactly-once even when a message was committed in some windows and not in others.
//!
//! The receipts are written with the window, in the same conditional write, so they cost no
//! request of their own; they are 16 bytes per message (not per event). A receipt is kept for
//! the redelivery horizon (the queue's visibility timeout times its `maxReceiveCount`), after
//! which SQS has either deleted the message or moved it to the dead-letter queue.

use std::collections::HashMap;

use tocsin_core::error::{Backend, Error, Result};

/// One receipt: 8 bytes of the message id's hash, the count, the time it was written.
const RECEIPT_BYTES: usize = 16;

/// The receipts kept at most per window (64 KiB). A window that receives more messages than
/// this within the horizon forgets the oldest first, and says so in the log: redeliveries of
/// those could be counted twice. Hundreds of events per message keep real flows far below it.
pub const MAX_RECEIPTS: usize = 4096;

/// The receipts of one window, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Receipts {
    entries: Vec<Receipt>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Receipt {
    message: u64,
    counted: u32,
    written: u32,
}

/// A message id as the receipts hold it. xxh3 is stable across versions and platforms; 64 bits
/// make a collision among a window's few thousand receipts about one in 10^12.
pub fn message_hash(id: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(id.as_bytes())
}

impl Receipts {
    /// How many of each message's events for this window are counted already.
    pub fn index(&self) -> HashMap<u64, u32> {
        self.entries
            .iter()
            .map(|r| (r.message, r.counted))
            .collect()
    }

    /// Records that the first `counted` events of `message` are counted, at `now` (seconds
    /// since the epoch); a receipt only grows.
    pub fn record(&mut self, message: u64, counted: u32, now: u32) {
        match self.entries.iter().position(|r| r.message == message) {
            Some(i) => {
                let mut r = self.entries.remove(i);
                r.counted = r.counted.max(counted);
                r.written = now;
                self.entries.push(r);
            }
            None => self.entries.push(Receipt {
                message,
                counted,
                written: now,
            }),
        }
    }

    /// Forgets the receipts written more than `horizon` seconds before `now`, then the oldest
    /// beyond [`MAX_RECEIPTS`]; returns how many of those it had to forget early.
    pub fn expire(&mut self, now: u32, horizon: u32) -> usize {
        let cutoff = now.saturating_sub(horizon);
        self.entries.retain(|r| r.written >= cutoff);
        let early = self.entries.len().saturating_sub(MAX_RECEIPTS);
        self.entries.drain(..early);
        early
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The binary attribute: 16 bytes per receipt, little-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * RECEIPT_BYTES);
        for r in &self.entries {
            out.extend_from_slice(&r.message.to_le_bytes());
            out.extend_from_slice(&r.counted.to_le_bytes());
            out.extend_from_slice(&r.written.to_le_bytes());
        }
        out
    }

    /// The inverse of [`Receipts::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        if !bytes.len().is_multiple_of(RECEIPT_BYTES) {
            return Err(Error::backend(
                Backend::DynamoDb,
                format!(
                    "a window's receipts are {} bytes, not a multiple of {RECEIPT_BYTES}",
                    bytes.len()
                ),
            ));
        }
        let entries = bytes
            .chunks_exact(RECEIPT_BYTES)
            .map(|c| {
                let (m, rest) = c.split_at(8);
                let (n, w) = rest.split_at(4);
                Receipt {
                    message: u64::from_le_bytes(m.try_into().unwrap_or_default()),
                    counted: u32::from_le_bytes(n.try_into().unwrap_or_default()),
                    written: u32::from_le_bytes(w.try_into().unwrap_or_default()),
                }
            })
            .collect();
        Ok(Receipts { entries })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(r: &Receipts, m: u64) -> u32 {
        r.index().get(&m).copied().unwrap_or(0)
    }

    #[test]
    fn a_receipt_grows_moves_to_the_end_and_round_trips() {
        let mut r = Receipts::default();
        r.record(message_hash("a"), 3, 100);
        r.record(message_hash("b"), 1, 101);
        r.record(message_hash("a"), 2, 102);
        assert_eq!(counted(&r, message_hash("a")), 3, "a receipt never shrinks");
        assert_eq!(counted(&r, message_hash("b")), 1);
        assert_eq!(counted(&r, message_hash("c")), 0);
        let bytes = r.encode();
        assert_eq!(bytes.len(), 32);
        let back = Receipts::decode(&bytes).expect("decodes");
        assert_eq!(back, r);
        assert_eq!(back.entries[1].message, message_hash("a"), "rewritten last");
        assert!(Receipts::decode(&bytes[..31]).is_err());
    }

    #[test]
    fn receipts_expire_after_the_horizon_and_beyond_the_cap() {
        let mut r = Receipts::default();
        r.record(1, 1, 100);
        r.record(2, 1, 200);
        assert_eq!(r.expire(1050, 900), 0);
        assert_eq!(counted(&r, 1), 0, "written 950 s before: forgotten");
        assert_eq!(counted(&r, 2), 1);
        for m in 10..(10 + MAX_RECEIPTS as u64 + 5) {
            r.record(m, 1, 1000);
        }
        assert_eq!(r.expire(1000, 900), 6);
        assert_eq!(r.entries.len(), MAX_RECEIPTS);
        assert_eq!(counted(&r, 2), 0, "the oldest went first");
    }
}
