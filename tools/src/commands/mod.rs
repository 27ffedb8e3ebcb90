//! One module per subcommand: its clap arguments and its `run`.

pub mod flash_image;
pub mod inspect;
pub mod keygen;
pub mod repo;
pub mod sign;
pub mod verify;
