//! Compiles the example drivers and the test components to WebAssembly
//! components with a nested `cargo build --target wasm32-wasip2`, then writes
//! `$OUT_DIR/guests.rs` (included by `src/guests.rs`): the example drivers
//! embedded as bytes, the test components as paths.
//!
//! The guests always build in release mode into `target/guests`, a target
//! directory of their own: the outer cargo holds the lock on its own one
//! while this script runs.

use std::env;
use std::ffi::OsString;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const TARGET: &str = "wasm32-wasip2";

/// One component the nested build produces.
struct Guest {
    /// Cargo package name.
    package: &'static str,
    /// Name of the generated constant.
    constant: &'static str,
    /// Driver name for the example drivers, embedded in the binary; `None`
    /// for test components, which are only referenced by path.
    driver: Option<&'static str>,
}

const GUESTS: &[Guest] = &[
    Guest {
        package: "ferry-driver-takeover",
        constant: "TAKEOVER",
        driver: Some("takeover"),
    },
    Guest {
        package: "ferry-driver-vendor-copy",
        constant: "VENDOR_COPY",
        driver: Some("vendor-copy"),
    },
    Guest {
        package: "ferry-driver-plain",
        constant: "PLAIN",
        driver: Some("plain"),
    },
    Guest {
        package: "ferry-driver-ferry-remote",
        constant: "FERRY_REMOTE",
        driver: Some("ferry-remote"),
    },
    Guest {
        package: "ferry-test-misbehave",
        constant: "MISBEHAVE_PATH",
        driver: None,
    },
    Guest {
        package: "ferry-test-faulty",
        constant: "FAULTY_PATH",
        driver: None,
    },
    Guest {
        package: "ferry-test-trap-capabilities",
        constant: "TRAP_CAPABILITIES_PATH",
        driver: None,
    },
    Guest {
        package: "ferry-test-careless",
        constant: "CARELESS_PATH",
        driver: None,
    },
];

/// A driver written in Python, componentized by componentize-py (from
/// PyPI) with the Python SDK. Optional: where componentize-py is missing
/// its constant is `None` and the tests that need it say how to install it.
struct PythonGuest {
    /// The driver's directory, relative to the workspace root; its module
    /// `app` defines the `Driver` class.
    dir: &'static str,
    /// Name of the generated constant (the component's path).
    constant: &'static str,
}

const PYTHON_GUESTS: &[PythonGuest] = &[
    PythonGuest {
        dir: "drivers/python-plain",
        constant: "PYTHON_PLAIN_PATH",
    },
    PythonGuest {
        dir: "drivers/python-takeover",
        constant: "PYTHON_TAKEOVER_PATH",
    },
    PythonGuest {
        dir: "tests/components/python-careless",
        constant: "PYTHON_CARELESS_PATH",
    },
];

/// The componentize-py command.
const COMPONENTIZE_PY: &str = "componentize-py";

/// What the components are built from, relative to the workspace root:
/// directories are watched with everything in them.
const SOURCES: &[&str] = &[
    "wit",
    "sdk",
    "drivers",
    "tests/components",
    "Cargo.toml",
    "Cargo.lock",
];

fn main() {
    let manifest_dir = PathBuf::from(required_env("CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .unwrap_or_else(|| fail("the host crate has no parent directory"))
        .to_path_buf();
    for source in SOURCES {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(source).display()
        );
    }
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = guest_target_dir(&workspace);
    check_target_installed();
    build(&workspace, &target_dir);

    let artifacts = target_dir.join(TARGET).join("release");
    let out_dir = PathBuf::from(required_env("OUT_DIR"));
    let mut source = generate(&artifacts);
    source.push_str(&build_python(&workspace, &target_dir.join("python")));
    if let Err(e) = fs::write(out_dir.join("guests.rs"), source) {
        fail(&format!(
            "cannot write guests.rs into {}: {e}",
            out_dir.display()
        ));
    }
}

/// `<target dir>/guests`, next to the outer build's own output.
fn guest_target_dir(workspace: &Path) -> PathBuf {
    let base = match env::var_os("CARGO_TARGET_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() => dir,
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    };
    base.join("guests")
}

/// Makes sure the standard library for the guest target is there. Where it
/// is missing and the compiler came from rustup, the script adds it (a
/// `rust-toolchain.toml` does not reliably do so, for example with
/// `RUSTUP_AUTO_INSTALL=0`); without rustup it fails early with the fix, as
/// cargo's own message about a missing target is far from obvious.
fn check_target_installed() {
    if target_std_dir().is_dir() {
        return;
    }
    match rustup_add_target() {
        Ok(()) if target_std_dir().is_dir() => {
            println!("cargo:warning=installed the Rust target {TARGET} with rustup");
        }
        Ok(()) => fail(&format!(
            "`rustup target add {TARGET}` succeeded but the target's standard library \
             is still missing ({})",
            target_std_dir().display()
        )),
        Err(why) => fail(&format!(
            "the Rust target {TARGET} is not installed (no {}) and could not be added \
             ({why}); install it with `rustup target add {TARGET}`",
            target_std_dir().display()
        )),
    }
}

/// `<sysroot>/lib/rustlib/wasm32-wasip2` of the compiler cargo uses.
fn target_std_dir() -> PathBuf {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    let output = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .unwrap_or_else(|e| fail(&format!("cannot run {}: {e}", rustc.to_string_lossy())));
    let sysroot = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || sysroot.is_empty() {
        fail("`rustc --print sysroot` failed");
    }
    Path::new(&sysroot).join("lib/rustlib").join(TARGET)
}

/// Runs `rustup target add` for the toolchain this build runs under (rustup
/// names it in `RUSTUP_TOOLCHAIN`). An error says why it could not.
fn rustup_add_target() -> Result<(), String> {
    let rustup = env::var_os("RUSTUP_HOME")
        .map(|_| OsString::from("rustup"))
        .or_else(|| env::var_os("RUSTUP_TOOLCHAIN").map(|_| OsString::from("rustup")))
        .ok_or_else(|| "this toolchain was not installed by rustup".to_owned())?;
    let mut command = Command::new(rustup);
    command.args(["target", "add", TARGET]);
    if let Some(toolchain) = env::var_os("RUSTUP_TOOLCHAIN") {
        command.arg("--toolchain").arg(toolchain);
    }
    // rustup's progress goes to stderr, which cargo shows on failure only.
    command.stdout(Stdio::from(std::io::stderr()));
    let status = command
        .status()
        .map_err(|e| format!("cannot run rustup: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("rustup exited with {status}"))
    }
}

/// Runs one nested cargo for every guest, so shared dependencies compile
/// once.
fn build(workspace: &Path, target_dir: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(cargo);
    command
        .current_dir(workspace)
        .arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target")
        .arg(TARGET)
        .arg("--target-dir")
        .arg(target_dir);
    for guest in GUESTS {
        command.arg("--package").arg(guest.package);
    }
    // Honour the outer `-j`; its jobserver itself does not cross over.
    if let Some(jobs) = env::var_os("NUM_JOBS") {
        command.arg("--jobs").arg(jobs);
    }
    scrub_env(&mut command);
    // Small components: no debug info, but keep the name section so traps
    // name the guest function that failed.
    command
        .env("CARGO_PROFILE_RELEASE_DEBUG", "false")
        .env("CARGO_PROFILE_RELEASE_STRIP", "debuginfo");
    // The script's stdout is cargo's instruction channel: keep it clean.
    command.stdout(Stdio::from(std::io::stderr()));

    let status = command
        .status()
        .unwrap_or_else(|e| fail(&format!("cannot run the nested cargo: {e}")));
    if !status.success() {
        fail(&format!(
            "building the driver components for {TARGET} failed ({status}); \
             the nested cargo's errors are above"
        ));
    }
}

/// Removes what the outer build set for itself and would leak into the
/// nested one: its target, flags, profile overrides, jobserver and wrappers.
fn scrub_env(command: &mut Command) {
    const KEEP: &[&str] = &[
        "CARGO_HOME",
        "CARGO_NET_",
        "CARGO_HTTP_",
        "CARGO_REGISTRIES_",
        "CARGO_REGISTRY_",
        "CARGO_TERM_",
    ];
    const DROP: &[&str] = &[
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "MAKEFLAGS",
        "MFLAGS",
        "TARGET",
        "HOST",
        "OUT_DIR",
        "OPT_LEVEL",
        "PROFILE",
        "DEBUG",
        "NUM_JOBS",
        "RUSTC_LINKER",
    ];
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let cargo_owned =
            key.starts_with("CARGO_") && !KEEP.iter().any(|keep| key.starts_with(keep));
        if cargo_owned || DROP.contains(&key) {
            command.env_remove(key);
        }
    }
}

/// The Rust source of `guests.rs`.
fn generate(artifacts: &Path) -> String {
    let mut source = String::new();
    let mut drivers = Vec::new();
    for guest in GUESTS {
        let file = artifacts.join(format!("{}.wasm", guest.package.replace('-', "_")));
        if !file.is_file() {
            fail(&format!(
                "the nested build reported success but {} is missing",
                file.display()
            ));
        }
        let Some(path) = file.to_str() else {
            fail(&format!("{} is not a UTF-8 path", file.display()));
        };
        let constant = guest.constant;
        // Writing to a String cannot fail.
        let _ = match guest.driver {
            Some(driver) => {
                drivers.push((driver, constant));
                writeln!(
                    source,
                    "/// The `{driver}` example driver component, embedded in the binary.\n\
                     pub const {constant}: &[u8] = include_bytes!({path:?});\n"
                )
            }
            None => writeln!(
                source,
                "/// Path of the `{}` test component (not embedded).\n\
                 pub const {constant}: &str = {path:?};\n",
                guest.package
            ),
        };
    }
    source.push_str(
        "/// The example drivers by name, as `ferry serve` installs them by default.\n\
         pub const EXAMPLE_DRIVERS: &[(&str, &[u8])] = &[\n",
    );
    for (driver, constant) in drivers {
        let _ = writeln!(source, "    ({driver:?}, {constant}),");
    }
    source.push_str("];\n");
    source
}

/// Componentizes the Python drivers into `out`; returns the Rust source of
/// their path constants (`None` each when componentize-py is missing).
fn build_python(workspace: &Path, out: &Path) -> String {
    let mut source = String::new();
    let available = Command::new(COMPONENTIZE_PY)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        println!(
            "cargo:warning=componentize-py is not installed: the Python example drivers are \
             not built (cargo xtask install-peers installs it)"
        );
        // Installing it adds a file to a directory of PATH: build again then.
        println!("cargo:rerun-if-env-changed=PATH");
        for dir in env::split_paths(&env::var_os("PATH").unwrap_or_default()) {
            if dir.is_dir() {
                println!("cargo:rerun-if-changed={}", dir.display());
            }
        }
    }
    if let Err(e) = fs::create_dir_all(out) {
        fail(&format!("cannot create {}: {e}", out.display()));
    }
    // componentize-py writes `__pycache__` beside the sources it reads
    // (whatever PYTHONDONTWRITEBYTECODE says): it reads copies, so the
    // watched sources stay as they are and the script does not rerun.
    let sdk = out.join("src/sdk");
    if available {
        stage_python(&workspace.join("sdk/python"), &sdk);
    }
    for guest in PYTHON_GUESTS {
        let name = guest.dir.rsplit('/').next().unwrap_or(guest.dir);
        let file = out.join(format!("{}.wasm", name.replace('-', "_")));
        let staged = out.join("src").join(name);
        let built = available && {
            stage_python(&workspace.join(guest.dir), &staged);
            let status = Command::new(COMPONENTIZE_PY)
                .current_dir(workspace)
                .arg("--wit-path")
                .arg(workspace.join("wit"))
                .args(["--world", "driver-world", "componentize", "app"])
                .arg("--python-path")
                .arg(&staged)
                .arg("--python-path")
                .arg(&sdk)
                .arg("--output")
                .arg(&file)
                .stdout(Stdio::from(std::io::stderr()))
                .status()
                .unwrap_or_else(|e| fail(&format!("cannot run {COMPONENTIZE_PY}: {e}")));
            if !status.success() {
                fail(&format!(
                    "componentize-py failed on {} ({status}); its errors are above",
                    guest.dir
                ));
            }
            true
        };
        let constant = guest.constant;
        let value = match file.to_str() {
            Some(path) if built => format!("Some({path:?})"),
            _ => "None".to_owned(),
        };
        let _ = writeln!(
            source,
            "/// Path of the `{name}` component, written in Python;\n\
             /// `None` where componentize-py was not installed at build time.\n\
             pub const {constant}: Option<&str> = {value};\n"
        );
    }
    source
}

/// Copies the `.py` files under `from` to `to`, which is emptied first.
fn stage_python(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    let copy = |from: &Path, to: &Path| -> std::io::Result<()> {
        let mut dirs = vec![(from.to_path_buf(), to.to_path_buf())];
        while let Some((src, dst)) = dirs.pop() {
            fs::create_dir_all(&dst)?;
            for entry in fs::read_dir(&src)? {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    if entry.file_name() != "__pycache__" {
                        dirs.push((path, dst.join(entry.file_name())));
                    }
                } else if path.extension().is_some_and(|e| e == "py") {
                    fs::copy(&path, dst.join(entry.file_name()))?;
                }
            }
        }
        Ok(())
    };
    if let Err(e) = copy(from, to) {
        fail(&format!(
            "cannot copy {} to {}: {e}",
            from.display(),
            to.display()
        ));
    }
}

fn required_env(key: &str) -> OsString {
    env::var_os(key).unwrap_or_else(|| fail(&format!("cargo did not set {key}")))
}

/// Stops the build; cargo shows this script's stderr when it fails.
fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1);
}
