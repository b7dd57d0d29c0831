//! `tocsin serve` and the `tocsin` command: the embedded store, operator configuration, the
//! server's wiring, and the rule commands. The HTTP router and the notifier it runs are in
//! `tocsin-adapters`, shared with the Lambdas.

/// `println!` that ignores a closed stdout (`tocsin export | head` must not panic).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// `print!` that ignores a closed stdout.
#[macro_export]
macro_rules! say_raw {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stdout(), $($arg)*);
    }};
}

pub mod backtest;
pub mod backups;
pub mod client;
pub mod commands;
pub mod config;
pub mod embedded;
pub mod listener;
pub mod notify;
pub mod operate;
pub mod serve;
pub mod silences;
pub mod tokens;
