//! The table of exported volumes. Each export is a slot that connections
//! hold on to: it carries the current device (switchable under open
//! connections), counts requests in flight, and knows every connection's
//! socket so that removing the export can drain, flush and close them.
//! An export can also be held (see [`super::pause`]): new requests wait,
//! those in flight end, and its device can change between the two.

use std::collections::{BTreeMap, HashMap};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::block::BlockDevice;

/// How long `remove` waits for requests in flight before flushing anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// What an export serves.
pub struct Export {
    /// The bytes behind the export.
    pub device: Arc<dyn BlockDevice>,
    /// Refuse writes (the client is told the export is read-only).
    pub read_only: bool,
}

/// Exports by name. Shared between the volume service and the NBD server.
#[derive(Default)]
pub struct ExportTable {
    exports: Mutex<BTreeMap<String, Arc<ExportSlot>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the data path down with it; the state
    // guarded here stays consistent between statements.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ExportTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `export` as `name`. An existing export of that name is
    /// replaced: its connections are drained, its device flushed and its
    /// connections closed, as with [`ExportTable::remove`]; clients reconnect
    /// to the new one. Use [`ExportTable::replace_device`] to keep them.
    pub fn add(&self, name: &str, export: Export) {
        let slot = Arc::new(ExportSlot::new(name, export));
        let old = lock(&self.exports).insert(name.to_owned(), slot);
        if let Some(old) = old {
            old.close();
        }
        tracing::debug!(export = %label(name), "NBD export added");
    }

    /// Withdraws `name`: no new connection can open it, requests in flight
    /// finish (bounded wait), the device is flushed, and then every open
    /// connection to it is closed. True if it existed.
    pub fn remove(&self, name: &str) -> bool {
        let slot = lock(&self.exports).remove(name);
        match slot {
            Some(slot) => {
                slot.close();
                tracing::debug!(export = %label(name), "NBD export removed");
                true
            }
            None => false,
        }
    }

    /// Switches the device behind `name` for every open and future
    /// connection. Requests already in flight finish on the old device;
    /// making the old device's completed writes durable is the caller's
    /// business. False if there is no such export.
    pub fn replace_device(&self, name: &str, device: Arc<dyn BlockDevice>) -> bool {
        let slot = lock(&self.exports).get(name).cloned();
        match slot {
            Some(slot) => {
                retire(slot.set_device(device));
                tracing::debug!(export = %label(name), "NBD export device replaced");
                true
            }
            None => false,
        }
    }

    /// Export names, sorted.
    pub fn names(&self) -> Vec<String> {
        lock(&self.exports).keys().cloned().collect()
    }

    /// The live slot of `name`, if exported.
    pub(crate) fn lookup(&self, name: &str) -> Option<Arc<ExportSlot>> {
        lock(&self.exports).get(name).cloned()
    }
}

/// The start of an export name, for logs: enough to tell exports apart,
/// too little to open one.
pub(crate) fn label(name: &str) -> String {
    if name.chars().count() <= 8 {
        return name.to_owned();
    }
    let mut short: String = name.chars().take(8).collect();
    short.push('…');
    short
}

/// One published export, held by its connections.
pub(crate) struct ExportSlot {
    name: String,
    read_only: bool,
    state: Mutex<SlotState>,
    /// Signalled when the last request in flight ends while the export is
    /// closing or held.
    drained: Condvar,
    /// Signalled when a hold ends or the export closes: requests waiting
    /// to start go on.
    resumed: Condvar,
}

struct SlotState {
    device: Arc<dyn BlockDevice>,
    in_flight: usize,
    closed: bool,
    /// Holds in force: new requests wait while it is not zero.
    holds: usize,
    connections: HashMap<u64, TcpStream>,
    /// Places taken by handshakes that chose this export and are sending
    /// their reply: they count against the cap before they attach.
    reserved: usize,
}

impl ExportSlot {
    fn new(name: &str, export: Export) -> Self {
        Self {
            name: name.to_owned(),
            read_only: export.read_only,
            state: Mutex::new(SlotState {
                device: export.device,
                in_flight: 0,
                closed: false,
                holds: 0,
                connections: HashMap::new(),
                reserved: 0,
            }),
            drained: Condvar::new(),
            resumed: Condvar::new(),
        }
    }

    /// Export name.
    /// What logs call this export: the start of its name only, since the
    /// name is the credential that opens it.
    pub(crate) fn label(&self) -> String {
        label(&self.name)
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Whether writes are refused.
    pub(crate) fn read_only(&self) -> bool {
        self.read_only
    }

    /// Current device size.
    pub(crate) fn size(&self) -> u64 {
        lock(&self.state).device.size()
    }

    /// Starts a request on the current device, waiting while the export
    /// is held; `None` once the export is being removed.
    pub(crate) fn begin(&self) -> Option<InFlight<'_>> {
        let mut st = lock(&self.state);
        while st.holds > 0 && !st.closed {
            st = self
                .resumed
                .wait(st)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        if st.closed {
            return None;
        }
        st.in_flight += 1;
        Some(InFlight {
            slot: self,
            device: Arc::clone(&st.device),
        })
    }

    /// Takes a place among the export's `max` connections for a handshake
    /// that chose it; `None` when every place is taken or the export is
    /// being removed. The place is given back unless it attaches.
    pub(crate) fn reserve(self: &Arc<Self>, max: usize) -> Option<Place> {
        let mut st = lock(&self.state);
        if st.closed || st.connections.len() + st.reserved >= max {
            return None;
        }
        st.reserved += 1;
        Some(Place {
            slot: Arc::clone(self),
            taken: true,
        })
    }

    /// Records an open connection in its place so that `close` can shut
    /// it. False if the export is already being removed.
    pub(crate) fn attach(&self, id: u64, socket: TcpStream, mut place: Place) -> bool {
        let mut st = lock(&self.state);
        st.reserved -= 1;
        place.taken = false;
        if st.closed {
            return false;
        }
        st.connections.insert(id, socket);
        true
    }

    /// Forgets a connection that ended.
    pub(crate) fn detach(&self, id: u64) {
        lock(&self.state).connections.remove(&id);
    }

    /// Makes new requests wait until [`ExportSlot::release`]; false if the
    /// export is being removed.
    pub(super) fn hold(&self) -> bool {
        let mut st = lock(&self.state);
        if st.closed {
            return false;
        }
        st.holds += 1;
        true
    }

    /// Waits until no request is in flight, or `deadline`; the number still
    /// in flight when it gives up.
    pub(super) fn wait_drained(&self, deadline: Instant) -> Result<(), usize> {
        let mut st = lock(&self.state);
        while st.in_flight > 0 && !st.closed {
            let now = Instant::now();
            if now >= deadline {
                return Err(st.in_flight);
            }
            st = self
                .drained
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        Ok(())
    }

    /// Serves `device` to every later request.
    /// Serves `device` from now on; returns the one it replaces, for the
    /// caller to let go of outside the export's lock.
    pub(super) fn set_device(&self, device: Arc<dyn BlockDevice>) -> Arc<dyn BlockDevice> {
        std::mem::replace(&mut lock(&self.state).device, device)
    }

    /// Ends one hold; the waiting requests start when none is left.
    pub(super) fn release(&self) {
        let mut st = lock(&self.state);
        st.holds = st.holds.saturating_sub(1);
        if st.holds == 0 {
            self.resumed.notify_all();
        }
    }

    /// Refuses new requests, stops reading from every connection, waits for
    /// requests in flight, flushes, then closes the connections.
    fn close(&self) {
        let mut st = lock(&self.state);
        st.closed = true;
        // Requests waiting behind a hold give up now.
        self.resumed.notify_all();
        for socket in st.connections.values() {
            let _ = socket.shutdown(Shutdown::Read);
        }
        let deadline = Instant::now() + DRAIN_TIMEOUT;
        while st.in_flight > 0 {
            let now = Instant::now();
            if now >= deadline {
                tracing::warn!(
                    export = %label(&self.name),
                    in_flight = st.in_flight,
                    "NBD export removed with requests still in flight"
                );
                break;
            }
            st = self
                .drained
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        let device = Arc::clone(&st.device);
        drop(st);
        if let Err(e) = device.flush() {
            tracing::warn!(export = %label(&self.name), error = %e, "flush on NBD export removal failed");
        }
        let connections = std::mem::take(&mut lock(&self.state).connections);
        for socket in connections.values() {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

/// A connection's place among an export's connections, from the choice of
/// the export until the connection attaches.
pub(crate) struct Place {
    slot: Arc<ExportSlot>,
    /// Still counted in `reserved`.
    taken: bool,
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.taken {
            lock(&self.slot.state).reserved -= 1;
        }
    }
}

/// A request in progress on an export; ends when dropped.
pub(crate) struct InFlight<'a> {
    slot: &'a ExportSlot,
    /// The device this request uses from start to end.
    pub(crate) device: Arc<dyn BlockDevice>,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut st = lock(&self.slot.state);
        st.in_flight -= 1;
        if (st.closed || st.holds > 0) && st.in_flight == 0 {
            self.slot.drained.notify_all();
        }
    }
}

/// Lets go of a device no export serves any more, on a thread of its own:
/// the last reference to a LUN whose file was deleted frees its blocks on
/// close, which takes a while for a large one and must not stall a switch
/// or a runtime thread.
pub(crate) fn retire(device: Arc<dyn BlockDevice>) {
    if Arc::strong_count(&device) > 1 {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("ferry-retire".into())
        .spawn(move || drop(device));
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a thread to let go of a device; dropping it here");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nbd::testdev::MemDevice;

    fn export(dev: &Arc<MemDevice>, read_only: bool) -> Export {
        Export {
            device: dev.clone(),
            read_only,
        }
    }

    #[test]
    fn add_remove_names() {
        let t = ExportTable::new();
        let dev = Arc::new(MemDevice::new(4096));
        t.add("b", export(&dev, false));
        t.add("a", export(&dev, true));
        assert_eq!(t.names(), vec!["a".to_owned(), "b".to_owned()]);
        assert!(t.lookup("a").unwrap().read_only());
        assert!(!t.lookup("b").unwrap().read_only());
        assert!(t.remove("a"));
        assert!(!t.remove("a"));
        assert!(t.lookup("a").is_none());
        assert_eq!(dev.flushes(), 1, "remove flushes the device");
    }

    #[test]
    fn removal_refuses_new_requests_and_flushes_once_drained() {
        let t = ExportTable::new();
        let dev = Arc::new(MemDevice::new(4096));
        t.add("v", export(&dev, false));
        let slot = t.lookup("v").unwrap();
        let req = slot.begin().unwrap();
        let t = Arc::new(t);
        let remover = {
            let t = t.clone();
            std::thread::spawn(move || t.remove("v"))
        };
        // The remover must wait for the request in flight before flushing.
        let until = Instant::now() + Duration::from_secs(5);
        while slot.begin().is_some() {
            assert!(Instant::now() < until, "slot never closed");
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(dev.flushes(), 0);
        drop(req);
        assert!(remover.join().unwrap());
        assert_eq!(dev.flushes(), 1);
        assert!(slot.begin().is_none());
    }

    #[test]
    fn replace_device_keeps_in_flight_requests_on_the_old_one() {
        let t = ExportTable::new();
        let old = Arc::new(MemDevice::new(4096));
        let new = Arc::new(MemDevice::new(8192));
        t.add("v", export(&old, false));
        let slot = t.lookup("v").unwrap();
        let req = slot.begin().unwrap();
        assert!(t.replace_device("v", new.clone()));
        assert!(!t.replace_device("missing", new.clone()));
        assert_eq!(req.device.size(), 4096);
        assert_eq!(slot.begin().unwrap().device.size(), 8192);
        assert_eq!(slot.size(), 8192);
    }

    #[test]
    fn add_over_an_existing_export_closes_the_old_one() {
        let t = ExportTable::new();
        let first = Arc::new(MemDevice::new(4096));
        let second = Arc::new(MemDevice::new(4096));
        t.add("v", export(&first, false));
        let old = t.lookup("v").unwrap();
        t.add("v", export(&second, true));
        assert!(old.begin().is_none());
        assert_eq!(first.flushes(), 1);
        assert!(t.lookup("v").unwrap().read_only());
    }
}
