module debias-guard.dev/examples/audit

go 1.19

require debias-guard.dev/debiasguard v0.0.0

replace debias-guard.dev/debiasguard => ../../bindings/go
