//! API tokens and per-table permissions from `config/permissions.yaml`.
//! Tokens are matched in constant time; a file may hold SHA-256 hashes instead of plain tokens.
