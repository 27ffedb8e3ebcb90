//! One module per subcommand: its clap arguments and its `run`.

pub mod anchor;
pub mod ca;
pub mod device;
pub mod flash_image;
pub mod inspect;
pub mod keygen;
pub mod release;
pub mod repo;
pub mod rollout;
pub mod sign;
pub mod verify;
