module scry.invalid/scry

go 1.19
