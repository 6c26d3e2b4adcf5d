//! Client authentication and authorization data shared by every node: stored password
//! hashes in the formats users migrate from ([`password`]) and their table form
//! ([`stored`]); SCRAM credentials ([`scram`]) and the server's side of the SCRAM exchange
//! ([`scram_exchange`]); authorization rules and their matcher ([`acl`]) and the mosquitto
//! `acl_file` import ([`mosquitto_acl`]).

pub mod acl;
#[cfg(test)]
mod acl_tests;
pub mod mosquitto_acl;

pub mod password;
#[cfg(test)]
mod password_tests;
pub mod scram;
pub mod scram_exchange;
pub mod stored;
