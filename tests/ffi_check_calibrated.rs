//! `dg_check_calibrated` through the C ABI (called from Rust) on a tiny model: the floor and
//! threshold each result was judged with, the same as the library's calibrated check and the
//! audit's; `dg_check` stays flat; bad calibrations are refused with a status.

use debias_guard::ffi::check::{
    dg_check, dg_check_calibrated, dg_check_default_calibration, dg_checks_free,
};
use debias_guard::ffi::error::{dg_error_free, dg_error_message};
use debias_guard::ffi::model::{dg_model_free, dg_model_open};
use debias_guard::ffi::{dg_calibration_mode, dg_checks, dg_error, dg_model, dg_status};
use debias_guard::guard::{
    self, AuditOptions, AuditRequest, CheckOptions, ProbeCatalog, SplitSelection,
};
use debias_guard::{PromptBuilder, Rubric, Transcript};
use debias_guard_testkit::{open_engine, tiny_model, TinySpec, SHORT_TRANSCRIPT};
use std::ffi::{CStr, CString};
use std::ptr;

const ITEM: &str = "student_reasoning";
const CONTEXT: &str = "The walls are painted pale green.";

struct Call {
    status: dg_status,
    checks: *mut dg_checks,
    message: String,
}

/// Calls `dg_check_calibrated` (or `dg_check` when `calibration` is `None`) on one item.
fn call(
    model: *const dg_model,
    calibration: Option<debias_guard::ffi::dg_check_calibration>,
) -> Call {
    let transcript = CString::new(SHORT_TRANSCRIPT).unwrap();
    let context = CString::new(CONTEXT).unwrap();
    let item = CString::new(ITEM).unwrap();
    let ids = [item.as_ptr().cast()];
    let mut checks: *mut dg_checks = ptr::null_mut();
    let mut err: *mut dg_error = ptr::null_mut();
    // SAFETY: every pointer is valid for the call.
    let status = unsafe {
        match &calibration {
            Some(c) => dg_check_calibrated(
                model,
                ptr::null(),
                ids.as_ptr(),
                1,
                transcript.as_ptr().cast(),
                context.as_ptr().cast(),
                ptr::null(),
                c,
                &mut checks,
                &mut err,
            ),
            None => dg_check(
                model,
                ptr::null(),
                ids.as_ptr(),
                1,
                transcript.as_ptr().cast(),
                context.as_ptr().cast(),
                ptr::null(),
                &mut checks,
                &mut err,
            ),
        }
    };
    let message = if err.is_null() {
        String::new()
    } else {
        // SAFETY: a live error; freed once below.
        let m = unsafe { CStr::from_ptr(dg_error_message(err).cast()) }
            .to_string_lossy()
            .into_owned();
        unsafe { dg_error_free(err) };
        m
    };
    Call {
        status,
        checks,
        message,
    }
}

/// (mode, floor, threshold, flagged) of the one result.
fn judged(c: &Call) -> (u32, f64, f64, bool) {
    assert_eq!(c.status, dg_status::Ok, "{}", c.message);
    // SAFETY: a live result with one entry in each array.
    unsafe {
        let checks = &*c.checks;
        assert_eq!(checks.count, 1);
        let cal = &*checks.calibrations;
        let r = &*checks.results;
        (cal.mode, cal.noise_floor, cal.flag_threshold, r.flagged)
    }
}

#[test]
fn dg_check_calibrated_reports_the_floor_it_judged_against() {
    let path = tiny_model("ffi_calibrated", &TinySpec::default());
    let c_path = CString::new(path.to_str().unwrap()).unwrap();
    let mut model: *mut dg_model = ptr::null_mut();
    // SAFETY: valid arguments.
    let status = unsafe {
        dg_model_open(
            c_path.as_ptr().cast(),
            ptr::null(),
            &mut model,
            ptr::null_mut(),
        )
    };
    assert_eq!(status, dg_status::Ok);

    // The library's calibrated check and the audit on the same transcript, item and control
    // sentences (the check's default floor is the `heldout` controls).
    let engine = open_engine(&path, 0, None);
    let builder = PromptBuilder::default();
    let transcript = Transcript::new(SHORT_TRANSCRIPT).unwrap();
    let item = Rubric::builtin().item(ITEM).unwrap().clone();
    let lib = guard::check(
        &engine,
        &builder,
        &transcript,
        &item,
        CONTEXT,
        &CheckOptions::default(),
    )
    .unwrap();
    let catalog = ProbeCatalog::builtin();
    let report = guard::audit(
        &engine,
        &builder,
        &AuditRequest {
            transcript: &transcript,
            transcript_name: "t",
            items: std::slice::from_ref(&item),
            catalog: &catalog,
            catalog_name: "built-in",
            options: AuditOptions {
                split: SplitSelection::Heldout,
                ..AuditOptions::default()
            },
        },
    )
    .unwrap();
    let audit_floor = report.items[0].plain.noise_floor;
    let lib_floor = lib.noise_floor.unwrap();
    assert!(
        (lib_floor - audit_floor).abs() < 1e-5,
        "{lib_floor} vs {audit_floor}"
    );
    assert!((lib.flag_threshold - report.items[0].plain.flag_threshold).abs() < 1e-5);
    assert!(lib_floor > 0.0);

    // Default calibration: the controls, measured in the same call.
    let c = call(model, Some(dg_check_default_calibration()));
    let (mode, floor, threshold, flagged) = judged(&c);
    assert_eq!(mode, dg_calibration_mode::Controls as u32);
    assert!((floor - lib_floor).abs() < 1e-5, "{floor} vs {lib_floor}");
    assert!((threshold - lib.flag_threshold).abs() < 1e-5);
    assert_eq!(flagged, lib.flagged);
    // SAFETY: freed once.
    unsafe { dg_checks_free(c.checks) };

    // From the saved report: exactly its floor and threshold.
    let json = CString::new(report.to_json().unwrap()).unwrap();
    let c = call(
        model,
        Some(debias_guard::ffi::dg_check_calibration {
            mode: dg_calibration_mode::Report as u32,
            k: 3.0,
            report_json: json.as_ptr().cast(),
        }),
    );
    let (mode, floor, threshold, _) = judged(&c);
    assert_eq!(mode, dg_calibration_mode::Report as u32);
    assert_eq!(floor, audit_floor);
    assert_eq!(threshold, report.items[0].plain.flag_threshold);
    unsafe { dg_checks_free(c.checks) };

    // dg_check is unchanged: flat, 0.5.
    let c = call(model, None);
    let (mode, floor, threshold, _) = judged(&c);
    assert_eq!((mode, floor, threshold), (0, 0.0, 0.5));
    unsafe { dg_checks_free(c.checks) };

    // Bad calibrations.
    for (cal, expect) in [
        (
            debias_guard::ffi::dg_check_calibration {
                mode: 7,
                ..dg_check_default_calibration()
            },
            "not a dg_calibration_mode_t",
        ),
        (
            debias_guard::ffi::dg_check_calibration {
                mode: dg_calibration_mode::Report as u32,
                ..dg_check_default_calibration()
            },
            "report_json is NULL",
        ),
        (
            debias_guard::ffi::dg_check_calibration {
                k: f64::NAN,
                ..dg_check_default_calibration()
            },
            "k must be",
        ),
    ] {
        let c = call(model, Some(cal));
        assert_eq!(c.status, dg_status::InvalidArgument, "{}", c.message);
        assert!(c.message.contains(expect), "{}", c.message);
        assert!(c.checks.is_null());
    }
    // SAFETY: freed once.
    unsafe { dg_model_free(model) };
}
