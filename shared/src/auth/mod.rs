//! Client authentication data shared by every node: stored password hashes in the formats
//! users migrate from ([`password`]) and their table form ([`stored`]).

pub mod password;
#[cfg(test)]
mod password_tests;
pub mod stored;
