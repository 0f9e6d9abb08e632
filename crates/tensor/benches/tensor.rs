//! Benchmark of the CPU tensor backend (filled in by the next commit).

fn main() {}
