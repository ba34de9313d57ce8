//! One module per family. Add a family by adding its module, its data file and a row in [`ALL`].

use crate::Family;

pub mod dh;
pub mod fake_tls_client_hello;
pub mod fake_tls_server_hello;

/// Every family, in report order.
pub const ALL: &[Family] = &[
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
];
