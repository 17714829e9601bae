//! `cargo xtask bench`: installs the peer tools, builds the benchmarks in the
//! release profile, runs each (Ferry and its peer side by side in the same
//! run), collects their results and writes one table with the machine's
//! description into BENCHMARKS.md between the `bench-table` markers.
//!
//! Benches report `BENCH <id> unit=.. runs=.. ferry=.. ferry_min=..
//! ferry_max=.. [peer=.. peer_min=.. peer_max=..] | <what>` lines; the two
//! older benches (`host_copy`, `async_migration`) print text for people,
//! which is parsed here so their measuring code stays as it is.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

const BEGIN: &str = "<!-- bench-table:begin -->";
const END: &str = "<!-- bench-table:end -->";

/// The benches in the order they run, each with the longest it may take
/// (the whole suite stays under ~25 minutes on two cores).
const BENCHES: &[(&str, u64)] = &[
    ("host_copy", 300),
    ("nbd", 600),
    ("async_migration", 900),
    ("driver_call", 120),
    ("api", 600),
    ("scale", 600),
    ("live_migration", 900),
    ("remote_array", 600),
    // Three routes of five rounds, each a 1 GiB fill and two cold copies:
    // about 3 minutes here.
    ("end_to_end", 900),
];

/// Median, min and max of a measurement.
#[derive(Debug, Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
}

#[derive(Debug, Clone)]
struct Row {
    id: String,
    what: String,
    unit: String,
    runs: usize,
    ferry: Stat,
    peer: Option<Stat>,
    /// Whether a bench that counts outcomes (`BENCH-COUNTS`) saw only
    /// successes.
    all_ok: Option<bool>,
}

/// How a row is judged: the peer column's text when there is no peer, and
/// the target.
enum Target {
    /// Ferry / peer at most this (times).
    RatioAtMost(f64),
    /// Ferry / peer at least this (rates).
    RatioAtLeast(f64),
    /// Ferry's median below this, in the row's unit.
    Below(f64, &'static str),
    /// Ferry / peer at most the ratio and Ferry's median below the bound,
    /// in the row's unit: lower is better, and good enough in itself
    /// (e.g. a stall no longer than the peer's and under 50 ms).
    RatioAtMostAndBelow(f64, f64, &'static str),
    /// The bench itself asserts the outcome (e.g. all migrations succeed).
    Asserted(&'static str),
    None,
}

fn target(id: &str) -> Target {
    match id {
        "host-copy" => Target::RatioAtMost(1.0),
        _ if id.starts_with("remote-copy-") => Target::RatioAtMost(1.0),
        _ if id.starts_with("remote-rand") => Target::RatioAtLeast(0.8),
        _ if id.starts_with("nbd-") => Target::RatioAtLeast(1.0),
        _ if id.starts_with("migrating-") => Target::RatioAtLeast(0.95),
        _ if id.starts_with("attachable-") => Target::Below(100.0, "100 ms"),
        "driver-call-median" => Target::Below(50.0, "50 µs"),
        "driver-call-python-median" => Target::Below(1000.0, "1 ms"),
        "scale-50" => Target::Asserted("all `success`, none refused or stuck"),
        _ if id.starts_with("live-stall-") => Target::RatioAtMostAndBelow(1.0, 50.0, "50 ms"),
        // A whole migration, request to done, at least as fast as qemu-img.
        _ if id.starts_with("e2e-") && !id.ends_with("-cpu") => Target::RatioAtMost(1.0),
        _ => Target::None,
    }
}

/// What `cargo xtask bench` was asked to do.
#[derive(Debug, PartialEq)]
struct Options {
    /// Only these benches (all when `None`).
    only: Option<Vec<String>>,
    /// Write the table into BENCHMARKS.md.
    write: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut only: Option<Vec<String>> = None;
        let mut write = true;
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.as_str() {
                "--only" => {
                    let list = it.next().ok_or("--only needs a list of benches")?;
                    let names: Vec<String> = list.split(',').map(str::to_owned).collect();
                    if let Some(bad) = names.iter().find(|n| !BENCHES.iter().any(|(b, _)| b == n)) {
                        return Err(format!("unknown bench {bad}"));
                    }
                    only = Some(names);
                }
                "--no-write" => write = false,
                other => return Err(format!("unknown bench option {other}")),
            }
        }
        // The table in BENCHMARKS.md holds every bench's rows: some of them
        // alone would replace it with a partial one.
        if only.is_some() {
            write = false;
        }
        Ok(Options { only, write })
    }
}

pub fn main(args: &[String]) -> ExitCode {
    let Options { only, write } = match Options::parse(args) {
        Ok(o) => o,
        Err(e) => return crate::fail(&e),
    };
    if only.is_some() {
        eprintln!("xtask: --only prints its rows and leaves BENCHMARKS.md alone");
    }
    if let Err(e) = crate::install_peers(crate::BENCH_TOOLS) {
        return crate::fail(&e);
    }
    let selected: Vec<(&str, u64)> = BENCHES
        .iter()
        .copied()
        .filter(|(b, _)| only.as_ref().is_none_or(|o| o.iter().any(|x| x == b)))
        .collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    // One build of everything first, so no bench's time includes compiling.
    let mut build = Command::new(&cargo);
    build.args(["bench", "-p", "ferry", "--no-run"]);
    for (b, _) in &selected {
        build.args(["--bench", b]);
    }
    match build.status() {
        Ok(s) if s.success() => {}
        Ok(_) => return crate::fail("building the benchmarks failed"),
        Err(e) => return crate::fail(&format!("cannot run cargo: {e}")),
    }

    let started = Instant::now();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (b, limit) in &selected {
        eprintln!("xtask: bench {b}");
        match run_bench(&cargo, b, Duration::from_secs(*limit)) {
            Ok(out) => {
                let parsed = match *b {
                    "host_copy" => parse_host_copy(&out),
                    "async_migration" => {
                        // IOPS rows as `BENCH` lines, time to attachable
                        // as text.
                        let mut rows = parse_bench_lines(&out);
                        rows.extend(parse_async(&out));
                        rows
                    }
                    _ => parse_bench_lines(&out),
                };
                if parsed.is_empty() {
                    failures.push(format!("`{b}` printed no result this table understands"));
                }
                rows.extend(parsed);
            }
            Err(e) => failures.push(format!("`{b}`: {e}")),
        }
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    let table = render(&rows, &failures, &machine(), minutes);
    println!("{table}");
    if write {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../BENCHMARKS.md");
        if let Err(e) = write_table(&path, &table) {
            return crate::fail(&e);
        }
        eprintln!("xtask: wrote the table into {}", path.display());
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs one bench, echoing its output; returns its stdout. Kills it when it
/// runs past `limit`.
fn run_bench(cargo: &str, name: &str, limit: Duration) -> Result<String, String> {
    let mut child = Command::new(cargo)
        .args(["bench", "-q", "-p", "ferry", "--bench", name])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            eprintln!("  {line}");
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("killed after {} s", limit.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let out = reader.join().map_err(|_| "output reader panicked")?;
    if status.success() {
        Ok(out)
    } else {
        Err(format!("failed ({status})"))
    }
}

fn parse_bench_lines(out: &str) -> Vec<Row> {
    let mut rows: Vec<Row> = out
        .lines()
        .filter_map(|l| l.strip_prefix("BENCH "))
        .filter_map(|l| {
            let (fields, what) = l.split_once(" | ").unwrap_or((l, ""));
            let mut words = fields.split_whitespace();
            let id = words.next()?.to_owned();
            let kv: BTreeMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
            let num = |k: &str| kv.get(k).and_then(|v| v.parse::<f64>().ok());
            let stat = |p: &str| {
                Some(Stat {
                    median: num(p)?,
                    min: num(&format!("{p}_min"))?,
                    max: num(&format!("{p}_max"))?,
                })
            };
            Some(Row {
                what: what.trim().to_owned(),
                unit: kv.get("unit")?.to_string(),
                runs: num("runs").map_or(1, |n| n as usize),
                ferry: stat("ferry")?,
                peer: stat("peer"),
                all_ok: None,
                id,
            })
        })
        .collect();
    // `BENCH-COUNTS <id> success=N refused=N failed=N stuck=N`: anything but
    // successes fails the row's target.
    for l in out.lines().filter_map(|l| l.strip_prefix("BENCH-COUNTS ")) {
        let mut words = l.split_whitespace();
        let Some(id) = words.next() else { continue };
        let bad: u64 = words
            .filter_map(|w| w.split_once('='))
            .filter(|(k, _)| *k != "success")
            .filter_map(|(_, v)| v.parse::<u64>().ok())
            .sum();
        for r in rows.iter_mut().filter(|r| r.id == id) {
            r.all_ok = Some(bad == 0);
        }
    }
    rows
}

/// A `Duration` as `{:?}` prints it (`517.9ms`, `3.399s`, `812µs`), in ms.
fn debug_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    for (suffix, scale) in [
        ("ns", 1e-6),
        ("µs", 1e-3),
        ("us", 1e-3),
        ("ms", 1.0),
        ("s", 1e3),
    ] {
        if let Some(n) = s.strip_suffix(suffix) {
            return n.parse::<f64>().ok().map(|v| v * scale);
        }
    }
    None
}

/// `  ferry copy_lun      517.9ms [478.0ms..3.399s]`.
fn parse_host_copy(out: &str) -> Vec<Row> {
    let runs = out
        .lines()
        .find_map(|l| {
            let i = l.find(" runs")?;
            l[..i].rsplit(' ').next()?.parse::<usize>().ok()
        })
        .unwrap_or(0);
    let stat_of = |prefix: &str| {
        let l = out.lines().find(|l| l.trim_start().starts_with(prefix))?;
        let rest = l.trim_start().strip_prefix(prefix)?.trim();
        let (median, range) = rest.split_once('[')?;
        let (min, max) = range.trim_end_matches(']').split_once("..")?;
        Some(Stat {
            median: debug_ms(median)?,
            min: debug_ms(min)?,
            max: debug_ms(max)?,
        })
    };
    match (stat_of("ferry copy_lun"), stat_of("qemu-img convert")) {
        (Some(f), Some(q)) => vec![Row {
            id: "host-copy".into(),
            what: "host copy, 4 GiB volume holding 1 GiB, vs `qemu-img convert` + fsync".into(),
            unit: "ms".into(),
            runs,
            ferry: f,
            peer: Some(q),
            all_ok: None,
        }],
        _ => Vec::new(),
    }
}

/// `  randread  migrating    115881 IOPS  idle     85139 IOPS  ratio ...` and
/// `   1 GiB  median    5.0ms  min    4.1ms  max    6.0ms`.
fn parse_async(out: &str) -> Vec<Row> {
    let mut rows = Vec::new();
    for l in out.lines() {
        let w: Vec<&str> = l.split_whitespace().collect();
        if w.len() >= 6 && w[1] == "migrating" && w[3] == "IOPS" && w[4] == "idle" {
            let (Ok(during), Ok(idle)) = (w[2].parse::<f64>(), w[5].parse::<f64>()) else {
                continue;
            };
            let one = |v| Stat {
                median: v,
                min: v,
                max: v,
            };
            rows.push(Row {
                id: format!("migrating-{}", w[0]),
                what: format!(
                    "4k {} IOPS (iodepth 16) while `migrating_attachable`; peer: same volume idle",
                    w[0].trim_start_matches("rand")
                ),
                unit: "IOPS".into(),
                runs: 1,
                ferry: one(during),
                peer: Some(one(idle)),
                all_ok: None,
            });
        }
        if w.len() >= 8 && w[1] == "GiB" && w[2] == "median" && w[4] == "min" && w[6] == "max" {
            let (Some(m), Some(lo), Some(hi)) = (debug_ms(w[3]), debug_ms(w[5]), debug_ms(w[7]))
            else {
                continue;
            };
            rows.push(Row {
                id: format!("attachable-{}g", w[0]),
                what: format!(
                    "time from migrate request to attachable, {} GiB volume",
                    w[0]
                ),
                unit: "ms".into(),
                runs: 3,
                ferry: Stat {
                    median: m,
                    min: lo,
                    max: hi,
                },
                peer: None,
                all_ok: None,
            });
        }
    }
    rows
}

/// A number for the table: thousands separated for rates, a few
/// significant digits otherwise.
fn fmt(v: f64, unit: &str) -> String {
    if matches!(unit, "IOPS" | "req/s") {
        let n = v.round() as u64;
        let s = n.to_string();
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn cell(s: &Stat, unit: &str) -> String {
    format!(
        "{} {unit} ({} – {})",
        fmt(s.median, unit),
        fmt(s.min, unit),
        fmt(s.max, unit)
    )
}

fn render(rows: &[Row], failures: &[String], machine: &str, minutes: f64) -> String {
    let mut t = String::new();
    t.push_str(&format!(
        "Generated by `cargo xtask bench` on {} ({minutes:.1} min). Cells: median (min – max) \
         over the runs shown; ratio = Ferry / peer medians.\n\n",
        today()
    ));
    t.push_str(&format!("Machine: {machine}\n\n"));
    t.push_str("| what | runs | Ferry | peer | ratio | target |\n");
    t.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for r in rows {
        let ratio = r.peer.map(|p| r.ferry.median / p.median);
        let (peer, goal) = match (target(&r.id), r.peer) {
            (Target::RatioAtMost(x), _) => (
                None,
                verdict(ratio.is_some_and(|q| q <= x), &format!("ratio ≤ {x:.2}")),
            ),
            (Target::RatioAtLeast(x), _) => (
                None,
                verdict(ratio.is_some_and(|q| q >= x), &format!("ratio ≥ {x:.2}")),
            ),
            (Target::Below(x, text), _) => (
                Some(format!("none (target < {text})")),
                verdict(r.ferry.median < x, &format!("< {text}")),
            ),
            (Target::RatioAtMostAndBelow(x, y, text), _) => (
                Some(format!("none (target < {text})")),
                verdict(
                    ratio.is_some_and(|q| q <= x) && r.ferry.median < y,
                    &format!("ratio ≤ {x:.2} and < {text}"),
                ),
            ),
            (Target::Asserted(text), _) => (
                Some("none".to_owned()),
                verdict(r.all_ok.unwrap_or(false), text),
            ),
            (Target::None, _) => (None, "—".to_owned()),
        };
        let peer = match (r.peer, peer) {
            (Some(p), _) => cell(&p, &r.unit),
            (None, Some(text)) => text,
            (None, None) => "none".to_owned(),
        };
        t.push_str(&format!(
            "| {} | {} | {} | {peer} | {} | {goal} |\n",
            r.what.replace('|', "\\|"),
            r.runs,
            cell(&r.ferry, &r.unit),
            ratio.map_or("—".to_owned(), |q| format!("{q:.2}")),
        ));
    }
    for f in failures {
        t.push_str(&format!("\nNot measured in this run: {f}.\n"));
    }
    t
}

fn verdict(ok: bool, what: &str) -> String {
    if ok {
        format!("{what}: met")
    } else {
        format!("{what}: **missed**")
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or("").trim().to_owned()
        })
        .unwrap_or_else(|_| "?".to_owned())
}

fn today() -> String {
    sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
}

/// nproc, memory, CPU, kernel, OS, the file system the benches write to and
/// the tools' versions.
fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, usize::from);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_gib = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or("?".to_owned(), |kb| {
            format!("{:.1} GiB", kb / (1024.0 * 1024.0))
        });
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "?".to_owned());
    let os = std::fs::read_to_string("/etc/os-release")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_owned())
        .unwrap_or_else(|| "?".to_owned());
    let dir = std::env::var_os("FERRY_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let fs = sh(
        "findmnt",
        &["-n", "-o", "FSTYPE", "-T", &dir.to_string_lossy()],
    );
    let qemu = sh("qemu-img", &["--version"]);
    let fio = sh("fio", &["--version"]);
    // wrk has no version flag of its own; its usage text starts with it.
    let wrk = sh("wrk", &["--version"]);
    let wrk = wrk.split(" [").next().unwrap_or("?").to_owned();
    format!(
        "{nproc} cores ({cpu}), {mem_gib} memory, kernel {}, {os}, {fs} under {}; {}, {qemu}, {fio}, {wrk}",
        sh("uname", &["-r"]),
        dir.display(),
        sh("rustc", &["-V"]),
    )
}

/// Replaces what lies between the markers (or appends the markers).
fn write_table(path: &Path, table: &str) -> Result<(), String> {
    let doc = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let block = format!("{BEGIN}\n{table}{END}");
    let new = match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{block}{}", &doc[..b], &doc[e + END.len()..]),
        _ => format!("{}\n{block}\n", doc.trim_end()),
    };
    std::fs::write(path, new).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_are_parsed_with_and_without_a_peer() {
        let out = "noise\nBENCH nbd-randread-4k unit=IOPS runs=3 ferry=10.5 ferry_min=9 ferry_max=11 \
                   peer=5 peer_min=4 peer_max=6 | NBD 4k random read\n\
                   BENCH driver-call-median unit=µs runs=5 ferry=22.1 ferry_min=21.9 ferry_max=22.6 | no-op\n";
        let rows = parse_bench_lines(out);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].id, "nbd-randread-4k");
        assert_eq!(rows[0].what, "NBD 4k random read");
        assert_eq!(rows[0].runs, 3);
        assert_eq!(rows[0].peer.map(|p| p.median), Some(5.0));
        assert_eq!(rows[1].unit, "µs");
        assert!(rows[1].peer.is_none());

        let scale = "BENCH scale-50 unit=s runs=3 ferry=1.3 ferry_min=1.2 ferry_max=2 | 50\n\
                     BENCH-COUNTS scale-50 success=149 refused=1 failed=0 stuck=0\n";
        assert_eq!(parse_bench_lines(scale)[0].all_ok, Some(false));
    }

    #[test]
    fn the_older_benches_text_is_parsed() {
        let copy = "host copy, 4 GiB volume with 1 GiB of data, 5 runs (median [min..max])\n  \
                    ferry copy_lun          1.082s [594.698ms..1.434s]\n  \
                    qemu-img convert        1.895s [1.029s..2.475s]\n";
        let rows = parse_host_copy(copy);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].runs, 5);
        assert!((rows[0].ferry.min - 594.698).abs() < 1e-9);
        assert!((rows[0].peer.map_or(0.0, |p| p.max) - 2475.0).abs() < 1e-9);

        let asy = "  randread  migrating     68503 IOPS  idle     86746 IOPS  ratio 0.790  (attachable after 29.5ms)\n\
                   time from migrate request to migrating_attachable (median of 3):\n   \
                   1 GiB  median    6.5ms  min    6.4ms  max    8.5ms\n  \
                   16 GiB  median   22.0ms  min   20.1ms  max  29.9ms\n";
        let rows = parse_async(asy);
        let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(
            ids,
            ["migrating-randread", "attachable-1g", "attachable-16g"]
        );
        assert_eq!(rows[0].peer.map(|p| p.median), Some(86746.0));
        assert!((rows[2].ferry.max - 29.9).abs() < 1e-9);
    }

    #[test]
    fn a_stall_must_beat_the_peer_and_the_bound() {
        let row = |ferry: f64, peer: f64| {
            let one = |v| Stat {
                median: v,
                min: v,
                max: v,
            };
            Row {
                id: "live-stall-gap".into(),
                what: "stall".into(),
                unit: "ms".into(),
                runs: 1,
                ferry: one(ferry),
                peer: Some(one(peer)),
                all_ok: None,
            }
        };
        let met = |r: Row| render(&[r], &[], "m", 0.0).contains(": met");
        assert!(met(row(20.0, 300.0)));
        assert!(!met(row(60.0, 300.0)), "50 ms is the bound");
        assert!(!met(row(20.0, 10.0)), "no longer than the peer's");
    }

    #[test]
    fn whole_migrations_are_held_to_qemu_img_but_their_cpu_is_not() {
        assert!(matches!(
            target("e2e-host-copy-success"),
            Target::RatioAtMost(1.0)
        ));
        assert!(matches!(
            target("e2e-async-attachable"),
            Target::RatioAtMost(1.0)
        ));
        assert!(matches!(target("e2e-async-cpu"), Target::None));
        // A server's CPU per request is shown beside its peer's, unheld.
        assert!(matches!(target("cpu-nbd-randread-4k"), Target::None));
    }

    #[test]
    fn some_benches_alone_never_write_the_table() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let all = Options::parse(&args(&[])).unwrap();
        assert_eq!((all.only, all.write), (None, true));
        let some = Options::parse(&args(&["--only", "nbd,api"])).unwrap();
        assert_eq!(some.only, Some(vec!["nbd".to_owned(), "api".to_owned()]));
        assert!(!some.write);
        assert!(!Options::parse(&args(&["--no-write"])).unwrap().write);
        for bad in [&["--only"][..], &["--only", "nbd,nope"], &["--fast"]] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_table_replaces_only_the_marked_region() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("B.md");
        std::fs::write(&path, format!("intro\n{BEGIN}\nold\n{END}\nnotes\n")).expect("write");
        write_table(&path, "new\n").expect("table");
        let doc = std::fs::read_to_string(&path).expect("read");
        assert_eq!(doc, format!("intro\n{BEGIN}\nnew\n{END}\nnotes\n"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
