//! Memory the library hands to C: results are plain `#[repr(C)]` structs whose pointers lead
//! into an [`Arena`] owned by the same allocation, so one `*_free` call releases everything.
//! Also the checked readers of C arguments (NULL, alignment, UTF-8).

use super::error::Failure;
use safer_ffi::c_char;
use std::any::Any;
use std::ffi::{CStr, CString};
use std::ptr;

/// Owns the strings and arrays a result's public struct points into.
#[derive(Default)]
pub(crate) struct Arena {
    strings: Vec<CString>,
    blocks: Vec<Box<dyn Any>>,
}

impl Arena {
    /// A NUL-terminated copy of `s` that lives as long as the arena.
    pub fn str(&mut self, s: &str) -> *const c_char {
        let c = c_string(s);
        let p = c.as_ptr().cast();
        self.strings.push(c);
        p
    }

    /// An optional string: NULL for `None`.
    pub fn opt_str(&mut self, s: Option<&str>) -> *const c_char {
        s.map_or(ptr::null(), |s| self.str(s))
    }

    /// An array that lives as long as the arena; NULL when empty.
    pub fn array<T: 'static>(&mut self, items: Vec<T>) -> *const T {
        if items.is_empty() {
            return ptr::null();
        }
        let boxed: Box<[T]> = items.into_boxed_slice();
        let p = boxed.as_ptr();
        // Moving the box does not move its heap block, so `p` stays valid.
        self.blocks.push(Box::new(boxed));
        p
    }

    /// An array of NUL-terminated copies of `items`.
    pub fn strs(&mut self, items: &[String]) -> *const *const c_char {
        let ptrs: Vec<*const c_char> = items.iter().map(|s| self.str(s)).collect();
        self.array(ptrs)
    }

    /// One value that lives as long as the arena.
    pub fn one<T: 'static>(&mut self, value: T) -> *const T {
        self.array(vec![value])
    }
}

/// A result handed to C: the public struct first (so a pointer to the whole is a pointer to
/// it), then what it points into, then anything else the library keeps for later calls.
#[repr(C)]
pub(crate) struct Boxed<P, X = ()> {
    public: P,
    arena: Arena,
    extra: X,
}

/// Moves a result to the heap and returns the pointer C receives.
pub(crate) fn into_c<P, X>(public: P, arena: Arena, extra: X) -> *mut P {
    Box::into_raw(Box::new(Boxed {
        public,
        arena,
        extra,
    }))
    .cast()
}

/// The extra data kept beside a result created by [`into_c`] with the same `X`.
///
/// # Safety
/// `p` must come from `into_c::<P, X>` and not have been freed.
pub(crate) unsafe fn extra_of<'a, P, X>(p: *const P) -> &'a X {
    // SAFETY: `Boxed` is `repr(C)` with `public` first, so `p` points at the whole box.
    unsafe { &(*p.cast::<Boxed<P, X>>()).extra }
}

/// Releases a result created by [`into_c`] with the same `P` and `X`; NULL is ignored.
///
/// # Safety
/// `p` must be NULL or come from `into_c::<P, X>` and not have been freed.
pub(crate) unsafe fn free_c<P, X>(p: *mut P) {
    if !p.is_null() && p.is_aligned() {
        // SAFETY: see above; the allocation was made by `Box::new` in `into_c`.
        drop(unsafe { Box::from_raw(p.cast::<Boxed<P, X>>()) });
    }
}

/// A C string copy of `s`; a NUL inside `s` (which C could not see past) becomes U+FFFD.
pub(crate) fn c_string(s: &str) -> CString {
    CString::new(s).unwrap_or_else(|_| {
        CString::new(s.replace('\0', "\u{FFFD}")).expect("no NUL left after replacing them")
    })
}

/// A required handle or struct argument.
///
/// # Safety
/// `p` must be NULL or point to a live `T` for `'a`.
pub(crate) unsafe fn arg_ref<'a, T: 'static>(p: *const T, what: &str) -> Result<&'a T, Failure> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    if !p.is_aligned() {
        return Err(Failure::invalid(format!(
            "`{what}` is not a valid pointer (misaligned)"
        )));
    }
    // Handles are looked up before use: a freed or mistyped one is refused.
    if let Some(kind) = super::handle::Kind::of::<T>() {
        super::handle::check_live(p, kind, what)?;
    }
    // SAFETY: non-NULL and aligned; a handle is live (checked above), any other struct is
    // live by the caller's contract.
    Ok(unsafe { &*p })
}

/// An optional handle or struct argument (NULL = `None`).
///
/// # Safety
/// As [`arg_ref`].
pub(crate) unsafe fn opt_ref<'a, T: 'static>(
    p: *const T,
    what: &str,
) -> Result<Option<&'a T>, Failure> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { arg_ref(p, what) }.map(Some)
    }
}

/// A required NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that stays unchanged for `'a`.
pub(crate) unsafe fn arg_str<'a>(p: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if p.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's contract.
    let bytes = unsafe { CStr::from_ptr(p.cast()) }.to_bytes();
    std::str::from_utf8(bytes).map_err(|e| {
        Failure::new(
            super::dg_status::InvalidUtf8,
            format!(
                "`{what}` is not valid UTF-8 (first bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// An optional NUL-terminated UTF-8 string argument (NULL = `None`).
///
/// # Safety
/// As [`arg_str`].
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Failure> {
    if p.is_null() {
        Ok(None)
    } else {
        // SAFETY: forwarded contract.
        unsafe { arg_str(p, what) }.map(Some)
    }
}

/// An array of `n` required strings. `p` may be NULL only when `n` is 0.
///
/// # Safety
/// `p` must be NULL or point to `n` pointers, each as for [`arg_str`].
pub(crate) unsafe fn arg_strs<'a>(
    p: *const *const c_char,
    n: usize,
    what: &str,
) -> Result<Vec<&'a str>, Failure> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if p.is_null() {
        return Err(Failure::null(what));
    }
    if !p.is_aligned() {
        return Err(Failure::invalid(format!(
            "`{what}` is not a valid pointer (misaligned)"
        )));
    }
    (0..n)
        .map(|i| {
            // SAFETY: `p` points to `n` readable pointers (caller's contract).
            let item = unsafe { p.add(i).read() };
            // SAFETY: forwarded contract.
            unsafe { arg_str(item, &format!("{what}[{i}]")) }
        })
        .collect()
}
