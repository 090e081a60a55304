//! The `sheaf` binary: a thin shell over the `sheaf` library.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match cli::config::parse_from(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("sheaf: error: {message}");
            return ExitCode::from(cli::codes::INVALID);
        }
    };
    sheaf::flight::tune_allocator();
    // Larger stacks than the 2 MiB default: expression trees are evaluated
    // recursively on these threads (planning has its own, larger stack).
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(8 << 20).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sheaf: error: cannot start the async runtime: {e}");
            return ExitCode::from(cli::codes::FAILURE);
        }
    };
    let code = runtime.block_on(cli::run(args));
    // Work still running (a blocking decoder, say) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}
