//! One module per family. Add a family by adding its module, its data file and a row in [`ALL`].

use crate::Family;

pub mod obfuscated2;
pub mod packet_rules;
pub mod transport;

/// Every family, in report order.
pub const ALL: &[Family] = &[
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
];
