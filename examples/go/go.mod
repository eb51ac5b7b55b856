module debias-guard/examples/go

go 1.19

require debias-guard/bindings/go v0.0.0

replace debias-guard/bindings/go => ../../bindings/go
