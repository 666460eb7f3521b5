module scry.invalid/examples

go 1.19

require scry.invalid/scry v0.0.0

replace scry.invalid/scry => ../../bindings/go
