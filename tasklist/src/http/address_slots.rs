//! Connections per remote address: one client (one address) cannot take every connection the
//! service has. Behind a proxy every connection comes from the proxy's address: raise the cap
//! there, or switch it off (0), and let the proxy limit its clients.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
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
        let address = client_of(address);
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

/// Who an address is: an IPv4 address (also written as IPv6), or an IPv6 /64 (one network
/// hands out a whole /64 to one machine).
fn client_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !0 << 64)),
        },
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
        // One IPv6 /64 is one client; an IPv4 address written as IPv6 is that address.
        let network = AddressSlots::new(1);
        let _held = network.take("2001:db8::1".parse().unwrap()).unwrap();
        assert!(network.take("2001:db8::ffff:2".parse().unwrap()).is_none());
        assert!(network.take("2001:db8:0:1::1".parse().unwrap()).is_some());
        let _v4 = network.take("10.0.0.1".parse().unwrap()).unwrap();
        assert!(network.take("::ffff:10.0.0.1".parse().unwrap()).is_none());
        let uncapped = AddressSlots::new(0);
        let held: Vec<_> = (0..100).map(|_| uncapped.take(one).unwrap()).collect();
        assert_eq!(held.len(), 100);
        assert!(uncapped.open.lock().unwrap().is_empty());
    }
}
