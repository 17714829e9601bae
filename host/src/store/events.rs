//! A bounded event log. Sequence numbers start at 1, strictly increase and
//! are never reused: the next one is kept in the meta table, not derived
//! from the events left after trimming.

use std::ops::Bound;

use redb::ReadableTable;

use super::tables::{EVENTS, META, META_NEXT_EVENT_SEQ};
use super::{Store, StoreError, decode, encode};

impl Store {
    /// Appends an event and returns its sequence number; drops the oldest
    /// events beyond the log's capacity in the same transaction.
    pub fn append_event(&self, ev: &serde_json::Value) -> Result<u64, StoreError> {
        let bytes = encode(ev)?;
        let capacity = self.event_capacity;
        self.write(|txn| {
            let mut meta = txn.open_table(META)?;
            let seq = meta.get(META_NEXT_EVENT_SEQ)?.map_or(1, |g| g.value());
            meta.insert(META_NEXT_EVENT_SEQ, seq + 1)?;
            let mut events = txn.open_table(EVENTS)?;
            events.insert(seq, bytes.as_slice())?;
            // Keep the `capacity` newest: seq + 1 - capacity ..= seq.
            let oldest_kept = (seq + 1).saturating_sub(capacity);
            if oldest_kept > 0 {
                events.retain_in(..oldest_kept, |_, _| false)?;
            }
            Ok(seq)
        })
    }

    /// Up to `limit` events with a sequence number greater than `seq`, oldest first.
    pub fn events_after(
        &self,
        seq: u64,
        limit: usize,
    ) -> Result<Vec<(u64, serde_json::Value)>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(EVENTS)?;
            let mut out = Vec::new();
            for entry in table
                .range::<u64>((Bound::Excluded(seq), Bound::Unbounded))?
                .take(limit)
            {
                let (k, v) = entry?;
                let k = k.value();
                out.push((k, decode("event", &k.to_string(), v.value())?));
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::StoreOptions;
    use super::*;

    #[test]
    fn append_and_read_after() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ferry.redb")).unwrap();
        assert!(s.events_after(0, 10).unwrap().is_empty());
        let seqs: Vec<u64> = (0..5)
            .map(|i| s.append_event(&json!({"kind": "test", "i": i})).unwrap())
            .collect();
        assert_eq!(seqs, vec![1, 2, 3, 4, 5]);
        let all = s.events_after(0, 100).unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(all[2], (3, json!({"kind": "test", "i": 2})));
        let page = s.events_after(2, 2).unwrap();
        assert_eq!(page.iter().map(|e| e.0).collect::<Vec<_>>(), vec![3, 4]);
        assert!(s.events_after(5, 10).unwrap().is_empty());
        assert!(s.events_after(u64::MAX, 10).unwrap().is_empty());
        assert!(s.events_after(0, 0).unwrap().is_empty());
    }

    #[test]
    fn log_is_bounded_and_seq_never_reused_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        let opts = StoreOptions { event_capacity: 7 };
        let mut last = 0;
        for round in 0..3 {
            let s = Store::open_with(&path, opts).unwrap();
            for i in 0..10 {
                let seq = s.append_event(&json!({"round": round, "i": i})).unwrap();
                assert!(seq > last, "{seq} after {last}");
                last = seq;
            }
            let kept = s.events_after(0, usize::MAX).unwrap();
            let seqs: Vec<u64> = kept.iter().map(|e| e.0).collect();
            assert_eq!(seqs, ((last - 6)..=last).collect::<Vec<_>>());
            assert_eq!(kept.last().unwrap().1, json!({"round": round, "i": 9}));
        }
        assert_eq!(last, 30);

        // A smaller capacity trims the backlog on the next append.
        let s = Store::open_with(&path, StoreOptions { event_capacity: 2 }).unwrap();
        assert_eq!(s.append_event(&json!("x")).unwrap(), 31);
        let seqs: Vec<u64> = s
            .events_after(0, 100)
            .unwrap()
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(seqs, vec![30, 31]);
    }

    #[test]
    fn default_capacity_keeps_ten_thousand() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("ferry.redb")).unwrap();
        // Write in bulk in one transaction to keep the test fast; the
        // trimming path is the one append_event uses.
        s.write(|txn| {
            let mut meta = txn.open_table(META)?;
            meta.insert(META_NEXT_EVENT_SEQ, 10_001)?;
            let mut events = txn.open_table(EVENTS)?;
            for seq in 1..=10_000u64 {
                events.insert(seq, b"{}".as_slice())?;
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(s.append_event(&json!({})).unwrap(), 10_001);
        let kept = s.events_after(0, usize::MAX).unwrap();
        assert_eq!(kept.len(), 10_000);
        assert_eq!(kept[0].0, 2);
    }
}
