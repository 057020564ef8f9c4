module gosight.dev/fuzz/seedgen

go 1.22
