//! The data export and import metric names (`/api/v5/data/export`, `/api/v5/data/import`),
//! re-exported by [`crate::metrics`]. Names only, as the rest of that module.

/// Counter: data exports and imports through the API, by outcome. Labels: `kind` (`export`,
/// `import`), `result` (`ok`; imports also `bad_request`: refused before anything was
/// written, `busy`: another import was running on the node, `unavailable`: the cores stopped
/// committing part-way).
pub const DATA_TRANSFERS_TOTAL: &str = "meshmq_data_transfers_total";
/// Counter: rows written by data imports. Labels: `table` (`auth_users`, `authz_rules`,
/// `banned`, `retained`, `settings`).
pub const DATA_IMPORT_ROWS_TOTAL: &str = "meshmq_data_import_rows_total";
