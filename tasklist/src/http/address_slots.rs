//! Connections per remote address: one client (one address) cannot take every connection the
//! service has. Behind a proxy every connection comes from the proxy's address: raise the cap
//! there, or switch it off (0), and let the proxy limit its clients.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// The open connections of each address, under a cap.
#[derive(Debug, Clone)]
pub struct AddressSlots {
    cap: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's place under its address's cap, given back when dropped.
#[derive(Debug)]
pub struct AddressSlot {
    slots: Option<(AddressSlots, IpAddr)>,
}

impl AddressSlots {
    /// At most `cap` connections per address; 0: no cap.
    pub fn new(cap: usize) -> AddressSlots {
        AddressSlots {
            cap,
            open: Arc::default(),
        }
    }

    /// A slot for one more connection from `address`; none when it holds the cap already.
    pub fn take(&self, address: IpAddr) -> Option<AddressSlot> {
        if self.cap == 0 {
            return Some(AddressSlot { slots: None });
        }
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(address).or_default();
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: Some((self.clone(), address)),
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let Some((slots, address)) = self.slots.take() else {
            return;
        };
        let mut open = slots.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                open.remove(&address);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_holds_at_most_the_cap_and_a_closed_connection_gives_its_slot_back() {
        let slots = AddressSlots::new(2);
        let (one, two): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "::1".parse().unwrap());
        let first = slots.take(one).unwrap();
        let _second = slots.take(one).unwrap();
        assert!(slots.take(one).is_none());
        assert!(slots.take(two).is_some(), "another address is not affected");
        drop(first);
        assert!(slots.take(one).is_some());
        let uncapped = AddressSlots::new(0);
        let held: Vec<_> = (0..100).map(|_| uncapped.take(one).unwrap()).collect();
        assert_eq!(held.len(), 100);
        assert!(uncapped.open.lock().unwrap().is_empty());
    }
}
