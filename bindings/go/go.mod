module debias-guard.dev/debiasguard

go 1.19
