//! `dp-accountant`: the RDP accountant on the command line (see `sparsedp_accountant::cli`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let matches = sparsedp_accountant::cli::command().get_matches();
    match sparsedp_accountant::cli::run(&matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}
