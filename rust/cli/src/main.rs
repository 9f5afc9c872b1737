//! The standalone `miniplm-sample` binary (`cargo install --path rust/cli`). The wheel ships
//! the same front end through the Python extension (maturin cannot ship a pyo3 module and a
//! binary in one wheel), so all logic lives in the library.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn main() {
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    // SIGINT and SIGTERM (the `termination` feature) alike: the first asks the running job
    // to stop cleanly (no output, no debris), a second kills at once.
    let _ = ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    let code = miniplm_cli::run(std::env::args_os().collect(), &cancel);
    std::process::exit(code);
}
