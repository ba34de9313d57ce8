//! One module per family. Add a family by adding its module, its data file and a row in [`ALL`].

use crate::replay::Family;

pub mod aes_cbc;
pub mod aes_ctr;
pub mod crc32;
pub mod crc32c;
pub mod dh;
pub mod fake_tls_client_hello;
pub mod fake_tls_server_hello;
pub mod hmac_sha256;
mod kat;
pub mod md5;
pub mod multi_conf;
pub mod obfuscated2;
pub mod packet_rules;
pub mod rpc_frames;
pub mod rpc_keys;
pub mod rpc_messages;
pub mod session;
pub mod sha1;
pub mod sha256;
pub mod transport;

/// Every family, in report order.
pub const ALL: &[Family] = &[
    Family {
        name: "aes_ctr",
        replay: aes_ctr::replay,
    },
    Family {
        name: "aes_cbc",
        replay: aes_cbc::replay,
    },
    Family {
        name: "sha1",
        replay: sha1::replay,
    },
    Family {
        name: "sha256",
        replay: sha256::replay,
    },
    Family {
        name: "md5",
        replay: md5::replay,
    },
    Family {
        name: "hmac_sha256",
        replay: hmac_sha256::replay,
    },
    Family {
        name: "crc32",
        replay: crc32::replay,
    },
    Family {
        name: "crc32c",
        replay: crc32c::replay,
    },
    Family {
        name: "obfuscated2",
        replay: obfuscated2::replay,
    },
    Family {
        name: "transport",
        replay: transport::replay,
    },
    Family {
        name: "packet_rules",
        replay: packet_rules::replay,
    },
    Family {
        name: "session",
        replay: session::replay,
    },
    Family {
        name: "fake_tls_client_hello",
        replay: fake_tls_client_hello::replay,
    },
    Family {
        name: "fake_tls_server_hello",
        replay: fake_tls_server_hello::replay,
    },
    Family {
        name: "dh",
        replay: dh::replay,
    },
    Family {
        name: "rpc_keys",
        replay: rpc_keys::replay,
    },
    Family {
        name: "rpc_frames",
        replay: rpc_frames::replay,
    },
    Family {
        name: "rpc_messages",
        replay: rpc_messages::replay,
    },
    Family {
        name: "multi_conf",
        replay: multi_conf::replay,
    },
];
