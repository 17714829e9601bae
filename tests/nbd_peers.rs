//! Real NBD clients (qemu-io, qemu-img, nbdinfo, nbdcopy, fio) against the
//! Ferry NBD server serving file-backed LUNs. Every tool is required: a
//! missing one fails the test with the Debian package to install.

#[path = "support_nbd.rs"]
mod support_nbd;

use std::process::Command;
use std::time::Duration;

use ferry::block::BlockDevice;
use support_nbd::*;

fn qemu_io(uri: &str, cmds: &[&str]) -> String {
    require_tool("qemu-io", "qemu-utils");
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw", uri]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = run_ok(&mut c);
    // qemu-io reports failed commands on stdout and still exits 0 for some.
    assert!(
        !out.contains("failed") && !out.contains("Pattern verification"),
        "qemu-io {cmds:?} reported a failure:\n{out}"
    );
    out
}

fn qemu_io_fails(uri: &str, cmds: &[&str]) -> String {
    require_tool("qemu-io", "qemu-utils");
    let mut c = Command::new("qemu-io");
    c.args(["-f", "raw", uri]);
    for cmd in cmds {
        c.args(["-c", cmd]);
    }
    let out = run(&mut c, Duration::from_secs(60));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() || text.contains("failed"),
        "qemu-io {cmds:?} was expected to fail:\n{text}"
    );
    text
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"))
}

#[test]
fn qemu_io_writes_and_qemu_img_compares() {
    require_tool("qemu-img", "qemu-utils");
    let fx = Fixture::new();
    let lun = fx.create("vol", 128 * MIB);
    let srv = Served::start(&[("vol", lun, false)]);
    let uri = srv.uri("vol");

    qemu_io(&uri, &["write -P 0xab 0 64M", "flush"]);
    qemu_io(&uri, &["read -P 0xab 0 64M", "read -P 0 64M 64M"]);

    let on_disk = file_bytes(&fx.path("vol"));
    assert_eq!(on_disk.len() as u64, 128 * MIB);
    assert!(on_disk[..(64 * MIB) as usize].iter().all(|b| *b == 0xab));
    assert!(on_disk[(64 * MIB) as usize..].iter().all(|b| *b == 0));

    let info = json(&run_ok(Command::new("qemu-img").args([
        "info",
        "--output=json",
        "-f",
        "raw",
        &uri,
    ])));
    assert_eq!(info["virtual-size"].as_u64(), Some(128 * MIB));

    let local = fx.dir.path().join("expected.raw");
    let mut expected = vec![0u8; (128 * MIB) as usize];
    expected[..(64 * MIB) as usize].fill(0xab);
    std::fs::write(&local, &expected).unwrap();
    run_ok(Command::new("qemu-img").args([
        "compare",
        "-f",
        "raw",
        "-F",
        "raw",
        local.to_str().unwrap(),
        &uri,
    ]));
    // The comparison must be able to fail: one changed byte is noticed.
    expected[(100 * MIB) as usize] = 1;
    std::fs::write(&local, &expected).unwrap();
    let differ = run(
        Command::new("qemu-img").args([
            "compare",
            "-f",
            "raw",
            "-F",
            "raw",
            local.to_str().unwrap(),
            &uri,
        ]),
        Duration::from_secs(120),
    );
    assert_eq!(
        differ.status.code(),
        Some(1),
        "qemu-img compare missed a difference"
    );
}

#[test]
fn fua_write_zeroes_and_discard() {
    let fx = Fixture::new();
    let lun = fx.create("vol", 16 * MIB);
    let srv = Served::start(&[("vol", lun.clone(), false)]);
    let uri = srv.uri("vol");

    qemu_io(
        &uri,
        &["write -P 0xcd 0 8M", "write -f -P 0xee 8M 4k", "flush"],
    );
    // Punch 1 MiB (TRIM), zero 1 MiB keeping it allocated (WRITE_ZEROES with
    // NO_HOLE) and 1 MiB allowing holes.
    qemu_io(
        &uri,
        &[
            "discard 0 1M",
            "write -z 2M 1M",
            "write -z -u 4M 1M",
            "flush",
        ],
    );
    qemu_io(
        &uri,
        &[
            "read -P 0 0 1M",
            "read -P 0xcd 1M 1M",
            "read -P 0 2M 1M",
            "read -P 0xcd 3M 1M",
            "read -P 0 4M 1M",
            "read -P 0xcd 5M 3M",
            "read -P 0xee 8M 4k",
        ],
    );
    // The discard reached the LUN file: the first MiB is a hole now, while
    // the range zeroed without unmapping stays allocated.
    let extents = lun.allocated_extents(0, 4 * MIB).unwrap();
    assert!(
        extents.iter().all(|e| e.offset >= MIB),
        "discarded range still allocated: {extents:?}"
    );
    assert!(
        extents
            .iter()
            .any(|e| e.offset <= 2 * MIB && e.offset + e.length >= 3 * MIB),
        "NO_HOLE zeroing punched a hole: {extents:?}"
    );
    let mut buf = vec![1u8; MIB as usize];
    lun.read_at(&mut buf, 0).unwrap();
    assert!(buf.iter().all(|b| *b == 0));
}

#[test]
fn nbdinfo_reports_exports() {
    require_tool("nbdinfo", "libnbd-bin");
    let fx = Fixture::new();
    let rw = fx.create("vol-rw", 64 * MIB);
    let ro = fx.create("vol-ro", 32 * MIB);
    let srv = Served::start(&[("vol-rw", rw, false), ("vol-ro", ro, true)]);

    let one = |export: &str| {
        let v = json(&run_ok(
            Command::new("nbdinfo").args(["--json", &srv.uri(export)]),
        ));
        v["exports"][0].clone()
    };
    let a = one("vol-rw");
    assert_eq!(a["export-name"], "vol-rw");
    assert_eq!(a["export-size"].as_u64(), Some(64 * MIB));
    assert_eq!(a["is_read_only"], false);
    assert_eq!(a["can_flush"], true);
    assert_eq!(a["can_fua"], true);
    assert_eq!(a["can_trim"], true);
    assert_eq!(a["can_zero"], true);
    assert_eq!(a["can_multi_conn"], true);
    assert_eq!(a["block_size_minimum"].as_u64(), Some(1));
    assert_eq!(a["block_size_preferred"].as_u64(), Some(4096));
    assert_eq!(a["block_size_maximum"].as_u64(), Some(32 * MIB));
    let b = one("vol-ro");
    assert_eq!(b["export-name"], "vol-ro");
    assert_eq!(b["export-size"].as_u64(), Some(32 * MIB));
    assert_eq!(b["is_read_only"], true);

    let list = json(&run_ok(Command::new("nbdinfo").args([
        "--list",
        "--json",
        &format!("nbd://{}", srv.addr()),
    ])));
    // Export names are credentials: the list reveals none of them.
    assert_eq!(list["exports"], serde_json::json!([]), "{list}");

    // An export that is not in the table cannot be opened.
    let missing = run(
        Command::new("nbdinfo").arg(srv.uri("not-attached")),
        Duration::from_secs(60),
    );
    assert!(!missing.status.success());
}

#[test]
fn read_only_export_refuses_writes_from_qemu() {
    let fx = Fixture::new();
    let lun = fx.create("vol", 8 * MIB);
    lun.write_at(&[0x42; 4096], 0).unwrap();
    let srv = Served::start(&[("vol", lun, true)]);
    let uri = srv.uri("vol");
    qemu_io_fails(&uri, &["write -P 0x99 0 4k"]);
    require_tool("qemu-io", "qemu-utils");
    let out =
        run_ok(Command::new("qemu-io").args(["-r", "-f", "raw", &uri, "-c", "read -P 0x42 0 4k"]));
    assert!(!out.contains("failed"), "{out}");
    let on_disk = file_bytes(&fx.path("vol"));
    assert!(on_disk[..4096].iter().all(|b| *b == 0x42));
    assert!(on_disk[4096..].iter().all(|b| *b == 0));
}

#[test]
fn nbdcopy_round_trip() {
    require_tool("nbdcopy", "libnbd-bin");
    let fx = Fixture::new();
    let size = 48 * MIB;
    let lun = fx.create("vol", size);
    let srv = Served::start(&[("vol", lun, false)]);

    let mut data = vec![0u8; size as usize];
    let mut rng = Rng::new(0x5eed);
    rng.fill(&mut data[..(20 * MIB) as usize]);
    // A zero gap, then more data, so holes and data both travel.
    rng.fill(&mut data[(30 * MIB) as usize..(47 * MIB) as usize]);
    let src = fx.dir.path().join("src.raw");
    let back = fx.dir.path().join("back.raw");
    std::fs::write(&src, &data).unwrap();

    run_ok(Command::new("nbdcopy").args([src.to_str().unwrap(), &srv.uri("vol")]));
    assert!(
        file_bytes(&fx.path("vol")) == data,
        "LUN differs from the copied file"
    );
    run_ok(Command::new("nbdcopy").args([&srv.uri("vol"), back.to_str().unwrap()]));
    assert!(file_bytes(&back) == data, "copy back differs");
}

#[test]
fn fio_random_writes_verify() {
    require_tool("fio", "fio");
    let fx = Fixture::new();
    let lun = fx.create("vol", 64 * MIB);
    let srv = Served::start(&[("vol", lun, false)]);
    let out = run_ok(Command::new("fio").args([
        "--name=verify",
        "--ioengine=nbd",
        &format!("--uri={}", srv.uri("vol")),
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=16",
        "--size=64M",
        "--verify=crc32c",
        "--verify_state_save=0",
        "--do_verify=1",
        "--verify_fatal=1",
        "--output-format=json",
    ]));
    let start = out.find('{').expect("fio printed no JSON");
    let report = json(&out[start..]);
    let job = &report["jobs"][0];
    assert_eq!(job["error"].as_i64(), Some(0), "fio job error:\n{out}");
    assert_eq!(job["write"]["io_bytes"].as_u64(), Some(64 * MIB));
    // The verify pass read back everything that was written.
    assert_eq!(job["read"]["io_bytes"].as_u64(), Some(64 * MIB));
}

#[test]
fn data_survives_detach_attach_and_restart() {
    let fx = Fixture::new();
    let lun = fx.create("vol", 16 * MIB);
    let srv = Served::start(&[("vol", lun.clone(), false)]);
    let uri = srv.uri("vol");
    qemu_io(&uri, &["write -P 0x5a 1M 3M", "flush"]);

    // Detach: the export disappears and clients cannot open it.
    assert!(srv.table.remove("vol"));
    assert!(!srv.table.remove("vol"));
    qemu_io_fails(&uri, &["read 0 512"]);

    // Attach again, with the LUN reopened from its file.
    drop(lun);
    srv.table.add(
        "vol",
        ferry::nbd::Export {
            device: fx.open("vol"),
            read_only: false,
        },
    );
    qemu_io(
        &uri,
        &[
            "read -P 0x5a 1M 3M",
            "read -P 0 0 1M",
            "write -P 0x77 0 4k",
            "flush",
        ],
    );

    // A fresh server on the same LUN file sees everything flushed before.
    drop(srv);
    let srv2 = Served::start(&[("vol", fx.open("vol"), false)]);
    qemu_io(
        &srv2.uri("vol"),
        &[
            "read -P 0x77 0 4k",
            "read -P 0x5a 1M 3M",
            "read -P 0 4M 12M",
        ],
    );
}
