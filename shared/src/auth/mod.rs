//! Client authentication data shared by every node: stored password hashes in the formats
//! users migrate from ([`password`]) and their table form ([`stored`]); SCRAM credentials
//! ([`scram`]) and the server's side of the SCRAM exchange ([`scram_exchange`]).

pub mod password;
#[cfg(test)]
mod password_tests;
pub mod scram;
pub mod scram_exchange;
pub mod stored;
