//! The command line: options and environment (`config`), and the subcommands (`commands`).

pub mod commands;
pub mod config;
