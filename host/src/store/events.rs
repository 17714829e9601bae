//! A bounded event log. Sequence numbers start at 1, strictly increase and
//! are never reused: the next one is kept in the meta table, not derived
//! from the events left after trimming. The log keeps at most
//! `event_capacity` events and, when an age limit is set, none older than
//! it; each append trims from the oldest end, at most
//! [`EVENT_TRIM_PER_APPEND`] events.

use std::ops::Bound;
use std::time::SystemTime;

use redb::ReadableTable;

use super::tables::{EVENTS, META, META_NEXT_EVENT_SEQ};
use super::{EVENT_TRIM_PER_APPEND, Store, StoreError, decode, encode};

/// Whether a stored event was emitted before `cutoff`. An event whose `at`
/// cannot be read counts as old: it could never be dated, and keeping it
/// would hold every younger event behind it.
fn emitted_before(bytes: &[u8], cutoff: SystemTime) -> bool {
    #[derive(serde::Deserialize)]
    struct Dated {
        at: Option<String>,
    }
    serde_json::from_slice::<Dated>(bytes)
        .ok()
        .and_then(|d| d.at)
        .and_then(|at| humantime::parse_rfc3339_weak(&at).ok())
        .is_none_or(|at| at < cutoff)
}

impl Store {
    /// Appends an event and returns its sequence number. In the same
    /// transaction it drops, oldest first, events beyond the log's capacity
    /// and events older than its age limit, at most
    /// [`EVENT_TRIM_PER_APPEND`] of them.
    pub fn append_event(&self, ev: &serde_json::Value) -> Result<u64, StoreError> {
        let bytes = encode(ev)?;
        let capacity = self.event_capacity;
        let cutoff = self
            .event_max_age
            .and_then(|age| SystemTime::now().checked_sub(age));
        self.write(|txn| {
            let mut meta = txn.open_table(META)?;
            let seq = meta.get(META_NEXT_EVENT_SEQ)?.map_or(1, |g| g.value());
            meta.insert(META_NEXT_EVENT_SEQ, seq + 1)?;
            let mut events = txn.open_table(EVENTS)?;
            events.insert(seq, bytes.as_slice())?;
            // Keep the `capacity` newest: seq + 1 - capacity ..= seq.
            let oldest_kept = (seq + 1).saturating_sub(capacity);
            for _ in 0..EVENT_TRIM_PER_APPEND {
                let expired = match events.first()? {
                    // The event just appended always stays.
                    Some((k, _)) if k.value() == seq => false,
                    Some((k, _)) if k.value() < oldest_kept => true,
                    Some((_, v)) => cutoff.is_some_and(|c| emitted_before(v.value(), c)),
                    None => false,
                };
                if !expired {
                    break;
                }
                events.pop_first()?;
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
        let opts = StoreOptions {
            event_capacity: 7,
            ..StoreOptions::default()
        };
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
        let s = Store::open_with(
            &path,
            StoreOptions {
                event_capacity: 2,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        assert_eq!(s.append_event(&json!("x")).unwrap(), 31);
        let seqs: Vec<u64> = s
            .events_after(0, 100)
            .unwrap()
            .iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(seqs, vec![30, 31]);
    }

    fn at(ago: std::time::Duration) -> serde_json::Value {
        let t = SystemTime::now() - ago;
        json!({"at": humantime::format_rfc3339_millis(t).to_string()})
    }

    #[test]
    fn events_older_than_the_age_limit_are_dropped_on_append() {
        use std::time::Duration;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        {
            // No age limit: old events stay.
            let s = Store::open(&path).unwrap();
            for days in [40, 35, 31] {
                s.append_event(&at(Duration::from_secs(days * 86_400)))
                    .unwrap();
            }
            s.append_event(&at(Duration::from_secs(3_600))).unwrap();
            assert_eq!(s.events_after(0, 100).unwrap().len(), 4);
        }
        let opts = StoreOptions {
            event_max_age: Some(Duration::from_secs(30 * 86_400)),
            ..StoreOptions::default()
        };
        let s = Store::open_with(&path, opts).unwrap();
        let seq = s.append_event(&at(Duration::ZERO)).unwrap();
        let kept: Vec<u64> = s
            .events_after(0, 100)
            .unwrap()
            .iter()
            .map(|e| e.0)
            .collect();
        // The three older than 30 days went; the hour-old one stays.
        assert_eq!(kept, vec![4, seq]);
        // The event being appended is never dropped by its own append, even
        // with an old time (trimming goes oldest first and stops at the
        // first young event).
        let old = s
            .append_event(&at(Duration::from_secs(60 * 86_400)))
            .unwrap();
        assert!(
            s.events_after(old - 1, 10)
                .unwrap()
                .iter()
                .any(|e| e.0 == old)
        );
    }

    #[test]
    fn one_append_trims_a_bounded_number_of_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.redb");
        let backlog = 3 * EVENT_TRIM_PER_APPEND as u64;
        {
            let s = Store::open(&path).unwrap();
            s.write(|txn| {
                let mut meta = txn.open_table(META)?;
                meta.insert(META_NEXT_EVENT_SEQ, backlog + 1)?;
                let mut events = txn.open_table(EVENTS)?;
                for seq in 1..=backlog {
                    events.insert(seq, b"{}".as_slice())?;
                }
                Ok(())
            })
            .unwrap();
        }
        // The capacity drops to 1: each append removes at most the bound,
        // and the backlog is gone after a few appends.
        let s = Store::open_with(
            &path,
            StoreOptions {
                event_capacity: 1,
                ..StoreOptions::default()
            },
        )
        .unwrap();
        let count = |s: &Store| s.events_after(0, usize::MAX).unwrap().len() as u64;
        s.append_event(&json!({})).unwrap();
        assert_eq!(count(&s), backlog + 1 - EVENT_TRIM_PER_APPEND as u64);
        for _ in 0..3 {
            s.append_event(&json!({})).unwrap();
        }
        assert_eq!(count(&s), 1);
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
