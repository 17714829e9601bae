//! The `ferry` binary: the server (`ferry serve`) and the CLI client.

fn main() -> std::process::ExitCode {
    ferry::cli::main()
}
