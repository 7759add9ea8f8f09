//! The controller's work queue: one entry per pod UID, served round-robin across namespaces,
//! with a delay queue for pods to look at later (a backoff, a claim held elsewhere, a wait
//! handed back by the executor).
//!
//! - **Bounded.** An entry is a pod's namespace, name and UID (about 200 bytes), never a task
//!   or a copy of the pod: 10,000 ready pods after a downtime are 10,000 small entries, not
//!   10,000 parked tasks. At most [`Queue::capacity`] entries; a pod that finds the queue full
//!   is counted and dropped, and its next watch event (or the next re-list) brings it back.
//! - **Deduplicated.** Adding a pod already queued changes nothing, except that a delayed
//!   entry becomes ready now (its watch event says something happened), and an entry being
//!   worked on is marked to be looked at again when its worker is done.
//! - **Fair.** Ready entries are kept per namespace and taken from each namespace in turn,
//!   so that one namespace's backlog (or its hostile pods) cannot starve another's.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use tokio::time::Instant;

/// A pod to work on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID: the pod's identity, and the queue's key.
    pub uid: String,
    /// The watcher (by index) that last saw the pod: a re-list of that watcher that no longer
    /// sees it drops the entry.
    pub origin: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Ready,
    Delayed(Instant),
    /// A worker has it; `true`: it changed meanwhile, look again when done.
    Running(bool),
}

#[derive(Debug)]
struct Entry {
    key: Key,
    slot: Slot,
    /// Consecutive failures, for the backoff.
    failures: u32,
}

/// What a worker gets back when it is done with an entry.
#[derive(Debug)]
pub struct Done {
    /// The pod changed while the worker had it.
    pub dirty: bool,
    /// Consecutive failures so far.
    pub failures: u32,
}

/// The queue. Not thread-safe by itself: the controller keeps it under its lock.
#[derive(Debug)]
pub struct Queue {
    entries: HashMap<String, Entry>,
    ready: BTreeMap<String, VecDeque<String>>,
    /// The namespace served last: the next turn goes to the one after it.
    turn: Option<String>,
    delayed: BTreeSet<(Instant, String)>,
    /// Entries a worker has.
    running: usize,
    capacity: usize,
}

impl Queue {
    /// An empty queue of at most `capacity` entries.
    pub fn new(capacity: usize) -> Queue {
        Queue {
            entries: HashMap::new(),
            ready: BTreeMap::new(),
            turn: None,
            delayed: BTreeSet::new(),
            running: 0,
            capacity,
        }
    }

    /// The most entries it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Entries: ready, delayed, running.
    pub fn depth(&self) -> (usize, usize, usize) {
        let delayed = self.delayed.len();
        (
            self.entries.len() - delayed - self.running,
            delayed,
            self.running,
        )
    }

    /// Every entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether the pod is being worked on.
    pub fn running(&self, uid: &str) -> bool {
        self.entries
            .get(uid)
            .is_some_and(|e| matches!(e.slot, Slot::Running(_)))
    }

    fn make_ready(&mut self, uid: &str, namespace: &str) {
        self.ready
            .entry(namespace.to_owned())
            .or_default()
            .push_back(uid.to_owned());
    }

    /// Queues the pod to be worked on now. `false` when the queue is full.
    pub fn add(&mut self, key: Key) -> bool {
        self.add_with(key, None, 0)
    }

    /// Queues the pod to be worked on at `at` (or now, when `None`), with its failure count.
    /// An entry already there keeps the earlier of the two times. `false` when the queue is
    /// full.
    pub fn add_with(&mut self, key: Key, at: Option<Instant>, failures: u32) -> bool {
        let uid = key.uid.clone();
        let full = self.entries.len() >= self.capacity;
        match self.entries.get_mut(&uid) {
            Some(e) => {
                e.key.origin = key.origin;
                match (e.slot, at) {
                    (Slot::Running(_), _) => e.slot = Slot::Running(true),
                    (Slot::Ready, _) => {}
                    (Slot::Delayed(t), Some(at)) if t <= at => {}
                    // Backing off after a failure: an event does not cut the backoff short
                    // (the API server may have asked for it).
                    (Slot::Delayed(_), None) if e.failures > 0 => {}
                    (Slot::Delayed(t), at) => {
                        self.delayed.remove(&(t, uid.clone()));
                        let ns = e.key.namespace.clone();
                        match at {
                            Some(at) => {
                                e.slot = Slot::Delayed(at);
                                self.delayed.insert((at, uid));
                            }
                            None => {
                                e.slot = Slot::Ready;
                                self.make_ready(&uid, &ns);
                            }
                        }
                    }
                }
                true
            }
            None if full => false,
            None => {
                let slot = match at {
                    Some(at) => {
                        self.delayed.insert((at, uid.clone()));
                        Slot::Delayed(at)
                    }
                    None => {
                        self.make_ready(&uid, &key.namespace);
                        Slot::Ready
                    }
                };
                self.entries.insert(
                    uid,
                    Entry {
                        key,
                        slot,
                        failures,
                    },
                );
                true
            }
        }
    }

    /// The next pod to work on, if one is ready at `now`: delayed entries that are due
    /// become ready first; namespaces take turns.
    pub fn pop(&mut self, now: Instant) -> Option<Key> {
        while let Some((at, uid)) = self.delayed.first().cloned() {
            if at > now {
                break;
            }
            self.delayed.pop_first();
            if let Some(e) = self.entries.get_mut(&uid) {
                e.slot = Slot::Ready;
                let ns = e.key.namespace.clone();
                self.make_ready(&uid, &ns);
            }
        }
        let namespace = match &self.turn {
            Some(last) => self
                .ready
                .range::<String, _>((
                    std::ops::Bound::Excluded(last.clone()),
                    std::ops::Bound::Unbounded,
                ))
                .next()
                .or_else(|| self.ready.iter().next())
                .map(|(ns, _)| ns.clone()),
            None => self.ready.keys().next().cloned(),
        }?;
        let queue = self.ready.get_mut(&namespace)?;
        let uid = queue.pop_front();
        if queue.is_empty() {
            self.ready.remove(&namespace);
        }
        self.turn = Some(namespace);
        let e = self.entries.get_mut(&uid?)?;
        e.slot = Slot::Running(false);
        self.running += 1;
        Some(e.key.clone())
    }

    /// When the next delayed entry is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.first().map(|(at, _)| *at)
    }

    /// The worker is done with the pod: its entry leaves the queue (the worker adds it back
    /// if there is more to do).
    pub fn done(&mut self, uid: &str) -> Done {
        match self.entries.remove(uid) {
            Some(e) => {
                if matches!(e.slot, Slot::Running(_)) {
                    self.running -= 1;
                }
                Done {
                    dirty: e.slot == Slot::Running(true),
                    failures: e.failures,
                }
            }
            None => Done {
                dirty: false,
                failures: 0,
            },
        }
    }

    fn drop_entry(&mut self, uid: &str) {
        let Some(e) = self.entries.remove(uid) else {
            return;
        };
        match e.slot {
            Slot::Delayed(at) => {
                self.delayed.remove(&(at, uid.to_owned()));
            }
            Slot::Ready => {
                if let Some(q) = self.ready.get_mut(&e.key.namespace) {
                    q.retain(|u| u != uid);
                    if q.is_empty() {
                        self.ready.remove(&e.key.namespace);
                    }
                }
            }
            // Its worker finds the pod gone.
            Slot::Running(_) => {
                self.entries.insert(uid.to_owned(), e);
            }
        }
    }

    /// The pod was deleted: its entry goes, unless a worker has it.
    pub fn forget(&mut self, uid: &str) {
        self.drop_entry(uid);
    }

    /// After watcher `origin` re-listed: entries it last saw that were not in the list go.
    pub fn retain_listed(&mut self, origin: usize, listed: &HashSet<String>) {
        let gone: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.key.origin == origin && !listed.contains(&e.key.uid))
            .map(|e| e.key.uid.clone())
            .collect();
        for uid in gone {
            self.drop_entry(&uid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(ns: &str, name: &str) -> Key {
        Key {
            namespace: ns.into(),
            name: name.into(),
            uid: format!("{ns}/{name}"),
            origin: 0,
        }
    }

    #[test]
    fn namespaces_take_turns_and_each_uid_is_queued_once() {
        let mut q = Queue::new(100);
        for i in 0..5 {
            assert!(q.add(key("hostile", &format!("h{i}"))));
        }
        assert!(q.add(key("hostile", "h0")), "a duplicate is accepted");
        assert!(q.add(key("default", "normal")));
        assert_eq!(q.len(), 6);
        let now = Instant::now();
        let first = q.pop(now).expect("one");
        let second = q.pop(now).expect("two");
        let names = [first.name.as_str(), second.name.as_str()];
        assert!(names.contains(&"normal"), "{names:?}");
        let rest: Vec<String> = std::iter::from_fn(|| q.pop(now)).map(|k| k.name).collect();
        assert_eq!(rest.len(), 4, "{rest:?}");
    }

    #[test]
    fn delayed_entries_wait_and_a_watch_event_makes_them_ready() {
        let mut q = Queue::new(100);
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        assert!(q.add_with(key("a", "p"), Some(later), 2));
        assert_eq!(q.pop(now), None);
        assert_eq!(q.next_due(), Some(later));
        assert_eq!(q.pop(later).map(|k| k.name), Some("p".into()));
        assert_eq!(q.done("a/p").failures, 2);
        assert!(q.is_empty());
        assert!(q.add_with(key("a", "p"), Some(later), 0));
        assert!(q.add(key("a", "p")));
        assert_eq!(q.pop(now).map(|k| k.name), Some("p".into()));
        // An event while it runs marks it dirty.
        q.add(key("a", "p"));
        assert!(q.done("a/p").dirty);
    }

    #[test]
    fn it_is_bounded_and_a_relist_drops_what_it_no_longer_sees() {
        let mut q = Queue::new(3);
        assert!(q.add(key("a", "1")));
        assert!(q.add_with(key("a", "2"), Some(Instant::now()), 0));
        assert!(q.add(key("b", "3")));
        assert!(!q.add(key("b", "4")), "full");
        let listed: HashSet<String> = ["a/1".to_owned()].into();
        q.retain_listed(0, &listed);
        assert_eq!(q.len(), 1);
        q.forget("a/1");
        assert!(q.is_empty());
        assert_eq!(q.pop(Instant::now()), None);
    }
}
