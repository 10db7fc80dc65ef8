//! No library: the package holds only benches (see Cargo.toml).
