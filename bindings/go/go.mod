module debias-guard/bindings/go

go 1.19
