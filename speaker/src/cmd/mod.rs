//! The speaker's command-line modes. Each runs until SIGTERM or Ctrl-C.

pub mod bgp;
pub mod l2;
pub mod run;

pub use barelb_runtime::shutdown_signal;
