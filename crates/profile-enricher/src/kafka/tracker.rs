//! Which offset of a partition may be stored: the one after the longest run of
//! records, from the first taken, whose outputs are all acknowledged. Records
//! finish in any order (different keys run at once); the stored offset never
//! passes one that has not.

use std::collections::{BTreeMap, HashMap};

pub type Partition = (String, i32);

#[derive(Debug, Default)]
pub struct Tracker {
    /// Per partition: offsets taken and not yet below the stored offset, with
    /// whether each is done.
    partitions: HashMap<Partition, BTreeMap<i64, bool>>,
}

impl Tracker {
    /// A record was taken for processing.
    pub fn take(&mut self, partition: &Partition, offset: i64) {
        self.partitions
            .entry(partition.clone())
            .or_default()
            .insert(offset, false);
    }

    /// A record's output (or dead letter) is acknowledged. Returns the offset
    /// to store, when the run of finished records from the front grew.
    pub fn finish(&mut self, partition: &Partition, offset: i64) -> Option<i64> {
        let pending = self.partitions.get_mut(partition)?;
        let done = pending.get_mut(&offset)?;
        *done = true;
        let mut next = None;
        while let Some(entry) = pending.first_entry() {
            if !*entry.get() {
                break;
            }
            next = Some(*entry.key() + 1);
            entry.remove();
        }
        next
    }

    /// Records taken and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|pending| pending.values().filter(|done| !**done).count())
            .sum()
    }

    /// Forgets everything: after a rebalance, what was taken belongs to an
    /// assignment that is gone (the new owner starts from the stored offset).
    pub fn clear(&mut self) {
        self.partitions.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_moves_only_past_a_run_of_finished_records() {
        let p = ("in".to_owned(), 0);
        let mut tracker = Tracker::default();
        for offset in 10..14 {
            tracker.take(&p, offset);
        }
        assert_eq!(tracker.finish(&p, 12), None);
        assert_eq!(tracker.finish(&p, 11), None);
        assert_eq!(tracker.finish(&p, 10), Some(13));
        assert_eq!(tracker.in_flight(), 1);
        assert_eq!(tracker.finish(&p, 13), Some(14));
        assert_eq!(tracker.finish(&p, 13), None, "a repeat is ignored");
    }

    #[test]
    fn partitions_are_independent_and_clear_forgets_everything() {
        let (a, b) = (("in".to_owned(), 0), ("in".to_owned(), 1));
        let mut tracker = Tracker::default();
        tracker.take(&a, 0);
        tracker.take(&b, 5);
        assert_eq!(tracker.finish(&b, 5), Some(6));
        tracker.clear();
        assert_eq!(tracker.finish(&a, 0), None);
        assert_eq!(tracker.in_flight(), 0);
    }
}
