//! finkfs CLI
fn main() {}
