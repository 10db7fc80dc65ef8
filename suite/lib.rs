//! Nothing here: this package holds only the slow-to-build tests, benches and examples of
//! `tower-mcp-session` (see its Cargo.toml).
