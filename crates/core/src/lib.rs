#![doc = include_str!("../README.md")]

pub mod capability;
pub mod card;
pub mod clock;
pub mod command;
pub mod id;
pub mod lifecycle;
pub mod memory;
pub mod model;
pub mod policy;
pub mod routing;
pub mod store;
pub mod text;
pub mod throttle;
pub mod token;
