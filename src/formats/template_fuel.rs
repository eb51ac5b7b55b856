//! Fuel for turning template values into text.
//!
//! minijinja 3.1 charges the text that printing, `string`, `join`, `tojson` and Python-style
//! methods produce only after building it, so a list of shared lists (`[b, b, …]` of
//! `[a, a, …]`) is expanded whole, gigabytes before the charge. These replacements walk the
//! value first, charging one unit of fuel per item and per 64 bytes of string, and refuse it
//! as soon as the render's fuel is spent; only then does minijinja's own code run.

use minijinja::value::{Rest, Value, ValueKind};
use minijinja::{Error, Output, State};

/// Bytes of string text charged as one unit of fuel (minijinja's own rate).
const BYTES_PER_FUEL: u64 = 64;

/// Charges the render's fuel for every item and string byte that turning `value` into text
/// would visit, shared items once per reference, stopping at the first unit that is not left.
pub(crate) fn charge_text_of(state: &State, value: &Value) -> Result<(), Error> {
    let mut pending = vec![value.clone()];
    while let Some(value) = pending.pop() {
        match value.kind() {
            ValueKind::String | ValueKind::Bytes => {
                let bytes = value
                    .as_str()
                    .map_or_else(|| value.as_bytes().map_or(0, <[u8]>::len), str::len)
                    as u64;
                state.consume_fuel(1 + bytes / BYTES_PER_FUEL)?;
            }
            ValueKind::Seq | ValueKind::Iterable => {
                if let Ok(items) = value.try_iter() {
                    for item in items {
                        state.consume_fuel(1)?;
                        pending.push(item);
                    }
                }
            }
            ValueKind::Map => {
                if let Ok(keys) = value.try_iter() {
                    for key in keys {
                        state.consume_fuel(2)?;
                        if let Ok(item) = value.get_item(&key) {
                            pending.push(item);
                        }
                        pending.push(key);
                    }
                }
            }
            _ => state.consume_fuel(1)?,
        }
    }
    Ok(())
}

/// Output formatter: charges a value's text, then prints it as minijinja does.
pub(crate) fn charged_formatter(
    out: &mut Output<'_>,
    state: &mut State<'_, '_>,
    value: &Value,
) -> Result<(), Error> {
    if value.kind() != ValueKind::String {
        charge_text_of(state, value)?;
    }
    minijinja::escape_formatter(out, state, value)
}

/// The `string` filter after charging its input.
pub(crate) fn charged_string(state: &State, value: &Value) -> Result<Value, Error> {
    charge_text_of(state, value)?;
    minijinja::filters::string(state, value)
}

/// The `join` filter after charging its input and arguments.
pub(crate) fn charged_join(state: &mut State, args: Rest<Value>) -> Result<Value, Error> {
    for arg in args.iter() {
        charge_text_of(state, arg)?;
    }
    Value::from_function(minijinja::filters::join).call(state, &args)
}

/// Python-style methods (`str.join`, `str.format`, …) after charging receiver and arguments.
pub(crate) fn charged_method(
    state: &mut State,
    receiver: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    charge_text_of(state, receiver)?;
    for arg in args {
        charge_text_of(state, arg)?;
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, receiver, method, args)
}
