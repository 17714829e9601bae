//! The memory budget of request buffers, shared by every connection of a
//! server. A READ or WRITE takes a buffer for its payload before it reads
//! the payload or the device and gives it back once its reply is sent;
//! when the budget is spent, the request waits for others to finish
//! instead of failing. One connection may hold a quarter of the budget at
//! most, so a few clients that stop taking their replies cannot hold all of
//! it. Buffers come in power-of-two size classes and are
//! kept for reuse up to a quarter of the budget, so a busy server does not
//! allocate (and zero) a buffer for each request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use super::proto::{MAX_PAYLOAD, REPLY_LEN};

/// The smallest class: small requests share buffers of this payload size.
const MIN_CLASS_BITS: u32 = 16;
/// The largest class holds the largest payload a request may carry.
const MAX_CLASS_BITS: u32 = MAX_PAYLOAD.trailing_zeros();
const CLASSES: usize = (MAX_CLASS_BITS - MIN_CLASS_BITS + 1) as usize;
/// How often a waiting request looks again even without a wake-up, so a
/// lost notification cannot stall it.
const RECHECK: Duration = Duration::from_millis(200);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The buffers of a server and what they may add up to.
pub(crate) struct BufferBudget {
    limit: usize,
    /// Bytes one connection may hold at once.
    per_connection: usize,
    /// Bytes of free buffers kept for reuse at most.
    keep: usize,
    state: Mutex<Pool>,
    returned: Condvar,
}

#[derive(Default)]
struct Pool {
    /// Capacity of every buffer in existence, lent or free.
    total: usize,
    /// Capacity of the free buffers.
    free_bytes: usize,
    /// Free buffers by class.
    free: [Vec<Vec<u8>>; CLASSES],
    /// Requests waiting for room: returning a buffer wakes them, and only
    /// then, since a wake-up is a system call on every request otherwise.
    waiting: usize,
}

/// A buffer lent by the budget: a reply header's room followed by room for
/// the payload. It goes back to the budget when dropped.
pub(crate) struct Buffer {
    data: Vec<u8>,
    class: usize,
    budget: Arc<BufferBudget>,
    holder: Arc<Holding>,
}

/// What one connection holds of the budget.
#[derive(Default)]
pub(crate) struct Holding(AtomicUsize);

/// The class of a payload length, and the capacity of its buffers.
fn class_of(len: usize) -> (usize, usize) {
    let bits = len
        .max(1)
        .next_power_of_two()
        .trailing_zeros()
        .max(MIN_CLASS_BITS);
    (
        (bits - MIN_CLASS_BITS) as usize,
        REPLY_LEN + (1usize << bits),
    )
}

impl BufferBudget {
    /// A budget of `limit` bytes; it must hold one largest buffer.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        let (_, largest) = class_of(MAX_PAYLOAD as usize);
        let limit = limit.max(largest);
        Arc::new(Self {
            limit,
            per_connection: (limit / 4).max(largest),
            keep: limit / 4,
            state: Mutex::new(Pool::default()),
            returned: Condvar::new(),
        })
    }

    /// A buffer with room for a reply header and `len` payload bytes
    /// (`len` at most `MAX_PAYLOAD`) for the connection `holder`, waiting
    /// while the budget or the connection's share of it is spent. Its
    /// contents are whatever the last user left; a new buffer is allocated
    /// but not touched, so its memory is only used as it fills.
    pub(crate) fn take(self: &Arc<Self>, len: usize, holder: &Arc<Holding>) -> Buffer {
        let (class, capacity) = class_of(len);
        let mut pool = lock(&self.state);
        loop {
            // Holdings change under the pool's lock only.
            let held = holder.0.load(Ordering::Relaxed);
            if held + capacity > self.per_connection {
                pool = self.wait(pool);
                continue;
            }
            if let Some(data) = pool.free[class].pop() {
                pool.free_bytes -= capacity;
                holder.0.store(held + capacity, Ordering::Relaxed);
                return self.lend(data, class, holder);
            }
            // Free buffers of other classes make room for this one.
            while pool.total + capacity > self.limit && pool.free_bytes > 0 {
                pool.drop_one_free();
            }
            if pool.total + capacity <= self.limit {
                pool.total += capacity;
                holder.0.store(held + capacity, Ordering::Relaxed);
                drop(pool);
                return self.lend(Vec::with_capacity(capacity), class, holder);
            }
            pool = self.wait(pool);
        }
    }

    fn wait<'a>(&self, mut pool: MutexGuard<'a, Pool>) -> MutexGuard<'a, Pool> {
        pool.waiting += 1;
        let mut pool = self
            .returned
            .wait_timeout(pool, RECHECK)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
        pool.waiting -= 1;
        pool
    }

    fn lend(self: &Arc<Self>, data: Vec<u8>, class: usize, holder: &Arc<Holding>) -> Buffer {
        Buffer {
            data,
            class,
            budget: Arc::clone(self),
            holder: Arc::clone(holder),
        }
    }

    fn give_back(&self, data: Vec<u8>, class: usize, holder: &Holding) {
        let capacity = REPLY_LEN + (1usize << (class as u32 + MIN_CLASS_BITS));
        let mut pool = lock(&self.state);
        holder.0.fetch_sub(capacity, Ordering::Relaxed);
        if data.capacity() == capacity && pool.free_bytes + capacity <= self.keep {
            pool.free_bytes += capacity;
            pool.free[class].push(data);
        } else {
            pool.total -= capacity;
        }
        let wake = pool.waiting > 0;
        drop(pool);
        if wake {
            self.returned.notify_all();
        }
    }

    /// Bytes of the buffers in existence, lent or kept.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        lock(&self.state).total
    }
}

impl Pool {
    /// Frees one kept buffer, the largest first: it makes the most room.
    fn drop_one_free(&mut self) {
        for class in (0..CLASSES).rev() {
            if let Some(data) = self.free[class].pop() {
                let capacity = REPLY_LEN + (1usize << (class as u32 + MIN_CLASS_BITS));
                debug_assert_eq!(data.capacity(), capacity);
                self.free_bytes -= capacity;
                self.total -= capacity;
                return;
            }
        }
    }
}

impl Buffer {
    /// The bytes, header room first.
    pub(crate) fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.data
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        let data = std::mem::take(&mut self.data);
        self.budget.give_back(data, self.class, &self.holder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_round_up_to_powers_of_two() {
        assert_eq!(class_of(1), (0, REPLY_LEN + (64 << 10)));
        assert_eq!(class_of(64 << 10), (0, REPLY_LEN + (64 << 10)));
        assert_eq!(class_of((64 << 10) + 1), (1, REPLY_LEN + (128 << 10)));
        assert_eq!(class_of(MAX_PAYLOAD as usize).0, CLASSES - 1);
    }

    fn holder() -> Arc<Holding> {
        Arc::new(Holding::default())
    }

    #[test]
    fn buffers_are_reused_and_new_ones_are_not_touched() {
        let budget = BufferBudget::new(64 << 20);
        let h = holder();
        let mut b = budget.take(4096, &h);
        assert!(b.vec().is_empty(), "a new buffer holds nothing yet");
        b.vec().resize(REPLY_LEN + 4096, 7);
        let ptr = b.vec().as_ptr();
        drop(b);
        let mut again = budget.take(100, &h);
        assert_eq!(again.vec().as_ptr(), ptr, "the kept buffer is lent again");
        assert_eq!(budget.in_use(), REPLY_LEN + (64 << 10));
    }

    #[test]
    fn a_request_waits_while_the_budget_is_spent() {
        let budget = BufferBudget::new(64 << 20);
        let a = budget.take(32 << 20, &holder());
        let b = budget.take(16 << 20, &holder());
        let waiter = {
            let budget = Arc::clone(&budget);
            std::thread::spawn(move || drop(budget.take(32 << 20, &holder())))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !waiter.is_finished(),
            "the third buffer would exceed the budget"
        );
        assert!(budget.in_use() <= 64 << 20);
        drop(a);
        waiter.join().unwrap();
        drop(b);
        assert!(budget.in_use() <= 64 << 20);
    }

    #[test]
    fn kept_buffers_give_way_to_a_larger_class() {
        let budget = BufferBudget::new(64 << 20);
        let small: Vec<_> = (0..100)
            .map(|_| budget.take(100 << 10, &holder()))
            .collect();
        drop(small);
        // 100 buffers of 128 KiB exceed what is kept (16 MiB): some went.
        assert!(budget.in_use() <= 16 << 20);
        let _big1 = budget.take(32 << 20, &holder());
        let _big2 = budget.take(16 << 20, &holder());
        assert!(budget.in_use() <= 64 << 20);
    }

    #[test]
    fn one_connection_holds_a_quarter_of_the_budget_at_most() {
        let budget = BufferBudget::new(256 << 20);
        let greedy = holder();
        // Three 16 MiB buffers (and their headers' room) fit in 64 MiB...
        let held: Vec<_> = (0..3).map(|_| budget.take(16 << 20, &greedy)).collect();
        let more = {
            let (budget, greedy) = (Arc::clone(&budget), Arc::clone(&greedy));
            std::thread::spawn(move || drop(budget.take(16 << 20, &greedy)))
        };
        // Others still get room while the greedy connection waits.
        drop(budget.take(32 << 20, &holder()));
        std::thread::sleep(Duration::from_millis(100));
        assert!(!more.is_finished(), "...a fourth does not");
        drop(held);
        more.join().unwrap();
        assert_eq!(greedy.0.load(Ordering::Relaxed), 0);
    }
}
