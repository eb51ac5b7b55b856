//! GGUF metadata values and typed accessors whose errors name the key.

use crate::error::{Error, Result};

/// One metadata value as stored in a GGUF file.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Unsigned 8-bit integer.
    U8(u8),
    /// Signed 8-bit integer.
    I8(i8),
    /// Unsigned 16-bit integer.
    U16(u16),
    /// Signed 16-bit integer.
    I16(i16),
    /// Unsigned 32-bit integer.
    U32(u32),
    /// Signed 32-bit integer.
    I32(i32),
    /// Unsigned 64-bit integer.
    U64(u64),
    /// Signed 64-bit integer.
    I64(i64),
    /// 32-bit float.
    F32(f32),
    /// 64-bit float.
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// Homogeneous array.
    Array(Vec<Value>),
}

impl Value {
    /// The value as a non-negative integer, if it is an integer of any width.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v.into()),
            Value::U16(v) => Some(v.into()),
            Value::U32(v) => Some(v.into()),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is numeric.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64),
        }
    }

    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The value as an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// Typed reads of the metadata map with errors that name the key.
pub trait MetadataExt {
    /// The raw value for `key`, if present.
    fn value(&self, key: &str) -> Option<&Value>;

    /// A required unsigned integer.
    fn req_usize(&self, key: &str) -> Result<usize> {
        let v = self
            .value(key)
            .ok_or_else(|| Error::metadata(key, "missing"))?;
        v.as_u64()
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| {
                Error::metadata(key, format!("expected an unsigned integer, found {v:?}"))
            })
    }

    /// An optional unsigned integer (present but mistyped is an error).
    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.value(key) {
            None => Ok(None),
            Some(_) => self.req_usize(key).map(Some),
        }
    }

    /// An optional float (present but mistyped is an error).
    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| Error::metadata(key, format!("expected a number, found {v:?}"))),
        }
    }

    /// An optional boolean (present but mistyped is an error).
    fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| Error::metadata(key, format!("expected a bool, found {v:?}"))),
        }
    }

    /// A required string.
    fn req_str(&self, key: &str) -> Result<&str> {
        let v = self
            .value(key)
            .ok_or_else(|| Error::metadata(key, "missing"))?;
        v.as_str()
            .ok_or_else(|| Error::metadata(key, "expected a string"))
    }

    /// An optional string (present but mistyped is an error).
    fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.value(key) {
            None => Ok(None),
            Some(_) => self.req_str(key).map(Some),
        }
    }

    /// A required array.
    fn req_array(&self, key: &str) -> Result<&[Value]> {
        let v = self
            .value(key)
            .ok_or_else(|| Error::metadata(key, "missing"))?;
        v.as_array()
            .ok_or_else(|| Error::metadata(key, "expected an array"))
    }
}

impl MetadataExt for std::collections::HashMap<String, Value> {
    fn value(&self, key: &str) -> Option<&Value> {
        self.get(key)
    }
}
