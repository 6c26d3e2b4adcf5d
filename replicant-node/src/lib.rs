//! replicant
