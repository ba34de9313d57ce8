//! One module per family. Add a family by adding its module, its data file and a row in [`ALL`].

use crate::Family;

pub mod rpc_frames;
pub mod rpc_keys;
pub mod rpc_messages;

/// Every family, in report order.
pub const ALL: &[Family] = &[
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
];
