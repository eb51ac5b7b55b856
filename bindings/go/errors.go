package debiasguard

// #include <stdlib.h>
// #include <debias_guard.h>
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"unsafe"
)

// Status is the outcome code of a C call (dg_status_t). Its numbers never change.
type Status int32

// The statuses of the C API; see include/debias_guard.h for each one's meaning.
const (
	StatusOK               Status = C.DG_STATUS_OK
	StatusNullArgument     Status = C.DG_STATUS_NULL_ARGUMENT
	StatusInvalidUTF8      Status = C.DG_STATUS_INVALID_UTF8
	StatusInvalidArgument  Status = C.DG_STATUS_INVALID_ARGUMENT
	StatusNotFound         Status = C.DG_STATUS_NOT_FOUND
	StatusNotSupported     Status = C.DG_STATUS_NOT_SUPPORTED
	StatusIO               Status = C.DG_STATUS_IO
	StatusModelInvalid     Status = C.DG_STATUS_MODEL_INVALID
	StatusModelUnsupported Status = C.DG_STATUS_MODEL_UNSUPPORTED
	StatusConfig           Status = C.DG_STATUS_CONFIG
	StatusContextOverflow  Status = C.DG_STATUS_CONTEXT_OVERFLOW
	StatusLabel            Status = C.DG_STATUS_LABEL
	StatusBackend          Status = C.DG_STATUS_BACKEND
	StatusPanic            Status = C.DG_STATUS_PANIC
	StatusAdapterInvalid   Status = C.DG_STATUS_ADAPTER_INVALID
	StatusResourceLimit    Status = C.DG_STATUS_RESOURCE_LIMIT
	StatusNonFinite        Status = C.DG_STATUS_NON_FINITE
	StatusCancelled        Status = C.DG_STATUS_CANCELLED
)

// String is the library's short description of the status.
func (s Status) String() string {
	return C.GoString(C.dg_status_text(C.int32_t(s)))
}

// Error is a failed call: its status and the library's message (which names the argument,
// file, line or key at fault).
type Error struct {
	Status  Status
	Message string
}

func (e *Error) Error() string {
	return "debiasguard: " + e.Message
}

// ErrClosed is returned by calls on a Model or Rubric after Close.
var ErrClosed = errors.New("debiasguard: use of a closed handle")

// takeError turns a C status and error object into a Go error, freeing the object.
func takeError(status C.dg_status_t, cerr *C.dg_error_t) error {
	if status == C.DG_STATUS_OK {
		return nil
	}
	defer C.dg_error_free(cerr)
	msg := C.GoString(C.dg_error_message(cerr))
	if cerr == nil {
		msg = Status(status).String()
	}
	return &Error{Status: Status(status), Message: msg}
}

// cstrings holds C copies of Go strings for the duration of one call.
type cstrings struct {
	ptrs []unsafe.Pointer
}

// str returns a C copy of s; a NUL byte inside s (which C would cut at) is an error.
func (c *cstrings) str(what, s string) (*C.char, error) {
	if i := strings.IndexByte(s, 0); i >= 0 {
		return nil, &Error{StatusInvalidArgument, fmt.Sprintf("`%s` contains a NUL byte at offset %d", what, i)}
	}
	p := C.CString(s)
	c.ptrs = append(c.ptrs, unsafe.Pointer(p))
	return p, nil
}

// optStr is str, with NULL for the empty string.
func (c *cstrings) optStr(what, s string) (*C.char, error) {
	if s == "" {
		return nil, nil
	}
	return c.str(what, s)
}

// list returns a C array of C copies of ss (NULL when empty), as `const char *const *`.
func (c *cstrings) list(what string, ss []string) (**C.char, C.size_t, error) {
	if len(ss) == 0 {
		return nil, 0, nil
	}
	size := C.size_t(len(ss)) * C.size_t(unsafe.Sizeof((*C.char)(nil)))
	arr := C.malloc(size)
	c.ptrs = append(c.ptrs, arr)
	items := unsafe.Slice((**C.char)(arr), len(ss))
	for i, s := range ss {
		p, err := c.str(fmt.Sprintf("%s[%d]", what, i), s)
		if err != nil {
			return nil, 0, err
		}
		items[i] = p
	}
	return (**C.char)(arr), C.size_t(len(ss)), nil
}

func (c *cstrings) free() {
	for _, p := range c.ptrs {
		C.free(p)
	}
	c.ptrs = nil
}
