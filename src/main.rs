fn main() {
    without_error_backtraces();
    std::process::exit(behavry::cli::main());
}

/// Turns off backtraces in error values (not in panics) for this process.
///
/// regorus's parser builds an `anyhow` error for every alternative it tries and drops, and with
/// `RUST_BACKTRACE=1` in the environment (common on a Rust developer's machine) each one captures
/// a backtrace: half of the work of compiling the shipped policies, paid by every `behavry hook`
/// run (a new process per tool call). behavry never shows those backtraces. The standard library
/// reads the setting once, on the first capture, so it is set for that moment and then put back
/// as it was: the servers behavry starts inherit the user's environment unchanged.
fn without_error_backtraces() {
    const VAR: &str = "RUST_LIB_BACKTRACE";
    let before = std::env::var_os(VAR);
    // Called first thing in `main`, before any other thread exists.
    std::env::set_var(VAR, "0");
    drop(std::backtrace::Backtrace::capture());
    match before {
        Some(value) => std::env::set_var(VAR, value),
        None => std::env::remove_var(VAR),
    }
}
