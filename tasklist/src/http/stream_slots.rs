//! How many streams one user may hold open at once: one user's tabs and scripts must not take
//! the connections every other user needs (a single user's 500 idle streams once made every
//! other request wait for a free connection).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The open streams per user, under a cap.
#[derive(Debug, Clone)]
pub struct StreamSlots {
    cap: usize,
    held: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open stream of a user; gives its slot back when dropped (the stream ended).
#[derive(Debug)]
pub struct StreamSlot {
    slots: StreamSlots,
    user: String,
}

impl StreamSlots {
    pub fn new(cap: usize) -> StreamSlots {
        StreamSlots {
            cap,
            held: Arc::default(),
        }
    }

    /// A slot for one more of `user`'s streams, or `None` when they hold the cap.
    pub fn take(&self, user: &str) -> Option<StreamSlot> {
        let mut held = self.lock();
        let count = held.entry(user.to_string()).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            slots: self.clone(),
            user: user.to_string(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, usize>> {
        // A panic while holding this lock cannot leave a count half-written.
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
        if let Some(count) = held.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_the_cap_and_a_dropped_slot_comes_back() {
        let slots = StreamSlots::new(2);
        let first = slots.take("kermit").expect("first");
        let _second = slots.take("kermit").expect("second");
        assert!(slots.take("kermit").is_none(), "third over the cap");
        assert!(
            slots.take("piggy").is_some(),
            "another user is not affected"
        );
        drop(first);
        assert!(slots.take("kermit").is_some(), "a slot given back");
    }
}
