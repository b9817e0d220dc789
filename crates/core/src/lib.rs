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

/// The message of a panic caught with `catch_unwind`, or a placeholder when its payload is not
/// text. It takes the `Box` itself: a `&Box<dyn Any>` passed where `&dyn Any` is expected would
/// be the box, not the payload, and never downcast.
#[allow(clippy::borrowed_box, reason = "see above: the box must not be coerced to `dyn Any`")]
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned())
}

#[cfg(test)]
mod tests {
    use super::panic_message;

    #[test]
    fn a_caught_panic_says_what_it_said() {
        let caught = |f: fn()| std::panic::catch_unwind(f).unwrap_err();
        assert_eq!(panic_message(&caught(|| panic!("plain"))), "plain");
        assert_eq!(panic_message(&caught(|| panic!("formatted {}", 7))), "formatted 7");
        assert_eq!(panic_message(&caught(|| std::panic::panic_any(7_u8))), "non-string panic");
    }
}
