//! The misbehaviours, each written so the optimizer cannot remove it.

use std::hint::black_box;

use ferry_sdk::{DriverError, LunAddress, Volume, block, state};

/// State key written by [`write_state_then_trap`].
pub const STATE_KEY: &str = "misbehave/state";

/// Spins until the host interrupts the call.
pub fn spin() -> ! {
    let mut counter = 0u64;
    loop {
        counter = black_box(counter.wrapping_add(1));
    }
}

/// Holds on to ever more memory until an allocation fails, which aborts the
/// call with a trap.
pub fn bloat() -> ! {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        // Touch every page so the memory is really committed.
        let chunk = vec![1u8; 1 << 20];
        hoard.push(black_box(chunk));
    }
}

/// Recurses until the stack is exhausted.
pub fn overflow_stack() -> ! {
    fn descend(depth: u64) -> u64 {
        // A frame-sized buffer the optimizer must keep, and work after the
        // call so the recursion is not a tail call it could turn into a loop.
        let frame = black_box([depth as u8; 256]);
        // Never true, but the compiler cannot know.
        if black_box(depth) == u64::MAX {
            return depth;
        }
        let below = descend(black_box(depth + 1));
        below.wrapping_add(u64::from(frame[(depth % 256) as usize]))
    }
    let depth = descend(0);
    // Unreachable in practice: the recursion never returns.
    panic!("recursion returned after {depth}");
}

/// Tries to open, list, create and delete LUNs of other arrays through
/// names that climb out of the pool.
pub fn escape(volume: &Volume) -> Result<Option<String>, DriverError> {
    let pools = [
        "../v1/default",
        "../../v1",
        "..",
        "../..",
        "/",
        "/etc",
        "default/../../v1/default",
    ];
    let names = [
        "../../v1/default/volume-x",
        "../volume-x",
        "/etc/passwd",
        "volume-x/../../x",
    ];
    let mut refusals = Vec::new();
    let mut escaped = false;
    let mut note = |what: String, result: Result<(), DriverError>| match result {
        Ok(()) => escaped = true,
        Err(e) => refusals.push(format!("{what}: {}", e.message())),
    };

    for pool in pools {
        let result = block::list_luns(pool).map(|_| ());
        note(format!("list {pool}"), result);
        for name in ["volume-x", &format!("volume-{}", volume.id)] {
            let address = LunAddress::new(pool, name);
            note(
                format!("open {pool}/{name}"),
                block::open_lun(&address).map(|_| ()),
            );
        }
        let address = LunAddress::new(pool, format!("escape-{}", volume.id));
        note(
            format!("create {pool}/{}", address.name),
            block::create_lun(&address, 512).map(|_| ()),
        );
    }
    for name in names {
        let address = LunAddress::new("default", name);
        note(
            format!("open default/{name}"),
            block::open_lun(&address).map(|_| ()),
        );
        note(
            format!("create default/{name}"),
            block::create_lun(&address, 512).map(|_| ()),
        );
        note(
            format!("delete default/{name}"),
            block::delete_lun(&address),
        );
    }

    if escaped {
        Ok(Some("ESCAPED".into()))
    } else {
        Err(DriverError::BackendError(format!(
            "escape blocked: {}",
            refusals.join("; ")
        )))
    }
}

/// Tries the host's files, the network (a TCP connection to loopback
/// `port`, and a name lookup) and the environment through WASI. Answers
/// `Ok("REACHED ...")` naming what worked, else a `backend-error` starting
/// `outside blocked: ` with each refusal.
pub fn reach_outside(port: u16) -> Result<Option<String>, DriverError> {
    let mut reached = Vec::new();
    let mut refusals = Vec::new();
    let mut note = |what: &str, outcome: Result<String, String>| match outcome {
        Ok(found) => reached.push(format!("{what}: {found}")),
        Err(e) => refusals.push(format!("{what}: {e}")),
    };
    for path in ["/", "/etc", ".", "/proc/self"] {
        note(
            &format!("files (list {path})"),
            std::fs::read_dir(path)
                .map(|d| format!("{} entries", d.count()))
                .map_err(|e| e.to_string()),
        );
    }
    note(
        "files (read /etc/passwd)",
        std::fs::read("/etc/passwd")
            .map(|b| format!("{} bytes", b.len()))
            .map_err(|e| e.to_string()),
    );
    note(
        "files (create ./escape)",
        std::fs::write("escape", b"x")
            .map(|()| "created".to_owned())
            .map_err(|e| e.to_string()),
    );
    let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
    note(
        "environment",
        if vars.is_empty() {
            Err("no variables".to_owned())
        } else {
            Ok(vars.join(","))
        },
    );
    // The working directory is not checked: WASI reports "/" of the
    // guest's own (empty) file system, which tells nothing of the host's.
    let args: Vec<String> = std::env::args().collect();
    note(
        "environment (arguments)",
        if args.is_empty() {
            Err("no arguments".to_owned())
        } else {
            Ok(args.join(" "))
        },
    );
    note(
        "network (tcp connect)",
        std::net::TcpStream::connect(("127.0.0.1", port))
            .map(|_| "connected".to_owned())
            .map_err(|e| e.to_string()),
    );
    note(
        "network (udp bind)",
        std::net::UdpSocket::bind(("127.0.0.1", 0))
            .map(|_| "bound".to_owned())
            .map_err(|e| e.to_string()),
    );
    note(
        "network (name lookup)",
        std::net::ToSocketAddrs::to_socket_addrs(&("localhost", port))
            .map(|a| format!("{} addresses", a.count()))
            .map_err(|e| e.to_string()),
    );
    if reached.is_empty() {
        Err(DriverError::BackendError(format!(
            "outside blocked: {}",
            refusals.join("; ")
        )))
    } else {
        Ok(Some(format!("REACHED {}", reached.join("; "))))
    }
}

/// Writes [`STATE_KEY`] and traps, so the host must drop the write.
pub fn write_state_then_trap() -> ! {
    // Even if the host refused the write, the trap is what is under test.
    let _ = state::set(STATE_KEY, b"written by a call that trapped");
    std::process::abort()
}

/// What an earlier call left in this instance's memory: a counter in a
/// static and a 4 MiB buffer on the heap. Answers `calls:N heap:SEEN`; a
/// host that gives every call a fresh instance answers `calls:1 heap:none`
/// every time.
pub fn remember() -> String {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    static HEAP: Mutex<Option<Vec<u8>>> = Mutex::new(None);
    let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
    let mut heap = HEAP.lock().unwrap_or_else(|e| e.into_inner());
    let seen = match heap.as_ref() {
        Some(buf) => format!("{}", buf.iter().filter(|b| **b == 0xa5).count()),
        None => "none".to_owned(),
    };
    *heap = Some(vec![0xa5; 4 << 20]);
    format!("calls:{calls} heap:{seen}")
}
